//! Test support shared by the test suites of several crates: real servers started for a
//! test and stopped when it ends. Test-only code: failures panic with what to do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // test support: a failed setup is a failed test

pub mod etcd;
