//! Test support shared by the test suites of several crates: real servers started for a
//! test and stopped when it ends. Test-only code: failures panic with what to do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // test support: a failed setup is a failed test

pub mod etcd;

/// A port nobody listens on right now, and never one this process was handed before. The
/// port is released before its server binds it, and the kernel may give a released port to
/// the next caller: two ports asked for in a row, or by two tests running at once, could
/// otherwise be the same, and one server would fail to start.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(port) {
            return port;
        }
    }
}

/// `n` distinct [`free_port`]s.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}
