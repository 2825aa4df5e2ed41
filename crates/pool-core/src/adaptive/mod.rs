//! Adaptive pool sizing: the policy as a pure function (`decide.rs`), the deterministic
//! simulation that tests it against fixed sizes (`sim.rs`, tests only), and the per-pool tick
//! that feeds it the pool's signals and applies its target (`runner.rs`).

pub mod decide;
mod runner;
pub mod share;
#[cfg(test)]
mod sim;

pub use decide::{decide, Decision, Direction, Inputs, Limits, Reason, State};
pub use runner::{inputs_from, limits_from, spawn_controller, DecisionLog};
pub use share::{water_fill, Claim};
