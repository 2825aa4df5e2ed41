//! The one clock of pool-core: tokio's `Instant`, so that tests on a paused runtime
//! (`#[tokio::test(start_paused = true)]`) drive every deadline, lifetime and wait in the
//! crate with virtual time. `.clippy.toml` disallows `std::time::Instant::now` here.
//!
//! Outside tests tokio reads the same monotonic clock as `std::time::Instant` (its `test-util`
//! feature, which adds the paused clock, is enabled only for pool-core's own tests).

pub use tokio::time::Instant;
