//! pgtide's pool core: client sessions, server connections, pools, failure classes. The hot
//! path lives here.
//!
//! # Layout
//! - `proxy` — listener, accept loop, reload, graceful shutdown ([`Proxy`]).
//! - `client` — login (startup, auth, initial parameters) and the forwarding session loop.
//! - `auth` — client authentication against the auth file ([`Authenticator`]).
//! - `server` — opening and authenticating server connections; session parameter tracking.
//! - `pool` — one (database, user) pool: FIFO-fair checkout, live resize, idle sweep.
//! - `prepared` — named prepared statements tracked across servers in transaction mode.
//! - `breaker` — fail fast, then probe: a circuit breaker per server address.
//! - `budget` — caps shared by pools (`max_db_connections`, `max_user_connections`).
//! - `shared` — process-wide state (config, users, pools, cancel keys); no globals.
//! - `cancel` — pgtide's own BackendKeyData and CancelRequest forwarding.
//! - `stats` — lock-free per-pool counters (the adaptive controller's signals).
//! - `failure`, `error` — the failure classes and the typed errors that carry them.
//! - `report`, `events` — one call per failure: counter, rate-limited log line, event ring.
//! - `io` — whole-frame reads for the startup/auth phases.
//! - `runtime` — the tokio runtime, sized by `pgtide.workers`.
//! - `clock` — the crate's one clock (tokio's `Instant`: paused-time tests drive it).
#![forbid(unsafe_code)]

pub mod adaptive;
pub mod auth;
pub mod breaker;
pub mod budget;
mod budget_learn;
pub mod cancel;
mod client;
pub mod clients;
pub mod clock;
pub mod error;
pub mod events;
pub mod failure;
mod io;
pub mod lifecycle;
pub mod overrides;
pub mod pool;
pub mod prepared;
pub mod proxy;
pub mod report;
pub mod runtime;
pub mod server;
pub mod shared;
pub mod snapshot;
pub mod state_file;
pub mod stats;
pub mod stream;
mod sync;
pub mod tls;

pub use auth::Authenticator;
pub use error::{AcquireError, ServerError};
pub use failure::FailureClass;
pub use pool::{Pool, PoolKey};
pub use proxy::{Proxy, ProxyError, ProxyHandle};
pub use report::{Failure, Failures, SlowQuery};
pub use shared::Shared;
