//! The one integration test binary: real `sortie` processes against real servers on loopback
//! (the lab: OpenSSH sshd hosts, an HTTP server, TCP listeners, a DNS server).

mod harness;

mod ansible;
mod check;
mod deps;
mod dns;
mod engine;
mod fuzz;
mod guard;
mod http;
mod jobs;
mod layout;
mod library;
mod release;
mod reports;
mod sftp_safety;
mod ship;
mod ssh;
