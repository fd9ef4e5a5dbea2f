//! Random names and secrets from the kernel's random source (`getrandom`): the temporary file
//! names of transfers (`steps::temp_name`) and the password of a `via` gateway's listener
//! (`conn::via`). Nothing here is seeded or kept.

/// `bytes` random bytes as lower-case hex (twice as many digits).
pub fn hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    let mut got = 0;
    // Bounded: each round either fills some bytes or is an interrupted call.
    while got < buf.len() {
        match rustix::rand::getrandom(&mut buf[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(::hex::encode(buf))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_digits_and_no_repeats() {
        let a = super::hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, super::hex(16).unwrap());
    }
}
