//! The workload tools: what a user, a CI job or a Pod-less workload runs beside the server.

pub mod consume;
pub mod create_token;
pub mod decode;
pub mod project;
pub mod review;
pub mod talker;
