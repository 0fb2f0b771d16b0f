//! Test support shared by the test suites of several crates: real servers started for a
//! test and stopped when it ends. Test-only code: failures panic with what to do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // test support: a failed setup is a failed test

pub mod etcd;

/// Ports nobody listens on right now (all bound at once, so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    listeners.iter().map(|l| l.local_addr().unwrap().port()).collect()
}
