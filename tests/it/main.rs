//! The one integration test binary: real `sortie` processes against real servers on loopback
//! (the lab: OpenSSH sshd hosts, an HTTP server, TCP and UDP listeners, a DNS server, and
//! servers from Debian packages: redis-server, memcached, Dovecot, aiosmtpd, chronyd).

mod harness;

mod ansible;
mod check;
mod deps;
mod dialog;
mod dns;
mod engine;
mod fleet;
mod fuzz;
mod guard;
mod http;
mod jobs;
mod layout;
mod library;
mod limits;
mod release;
mod reports;
mod sftp_safety;
mod shard;
mod ship;
mod slurm;
mod ssh;
mod ssh_config;
mod via;
mod wan;
mod web;
