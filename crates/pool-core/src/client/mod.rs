//! A client connection: login ([`login`]) then its session ([`session`]).
//!
//! # Layout
//! - `login` — startup packet, TLS, authentication, the initial parameters.
//! - `refusal` — every refusal as one typed value, counted and sent by one function.
//! - `session` — the session loop: idle waits, then a transaction on a server from the pool.
//! - `idle`, `park` — the idle wait, and parking quiet sessions outside tasks.
//! - `bound` — the forwarding loop while a client is bound to a server.
//! - `progress` — the release rule as pure code: when a server may go back, or must close.
//! - `timing` — query/idle-in-transaction timeouts, server time per round trip, and who
//!   cancelled a statement.
//! - `ending` — how a session ends: release or close, report, tell the client.
//! - `cancelled` — answering a CancelRequest for a client still queued for a server.
//! - `slow` — the slow query log.
//! - `reply` — the FATAL pgtide sends when it is not a failure (shutdown).

mod bound;
mod cancelled;
mod ending;
mod idle;
mod login;
mod park;
mod progress;
mod refusal;
mod reply;
mod session;
mod slow;
mod timing;

pub use login::{handle_client, ClientSlot};
pub use park::Parking;
