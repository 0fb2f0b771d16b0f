//! Placeholder.

/// Placeholder.
pub struct EventStream;
