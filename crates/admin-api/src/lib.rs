//! pgtide's admin HTTP API: what SREs read and change at run time, on its own listener
//! (loopback by default), versioned under `/v1`, JSON in and out.
//!
//! [`router`] builds the whole API from an [`AdminState`] (a [`ProxyHandle`], the tokens, the
//! Prometheus handle); [`serve`] runs it on a bound listener until pgtide shuts down. pool-core
//! knows nothing of HTTP or JSON: this crate maps its plain snapshot structs into its own serde
//! types (`dto`), and every change goes through pool-core's one reload path and its runtime
//! override layer, so the API can do nothing the config file could not.
//!
//! # Layout
//! - `routes` — the table of every endpoint (method, path, access): [`router`] is built from it,
//!   and a test checks it against `docs/openapi.json` both ways.
//! - `pools`, `listing`, `lifecycle`, `health` — the handlers: pools and their limits and
//!   actions; clients, servers, events; config, reload and shutdown; health and readiness.
//! - `auth` — bearer tokens (viewer, operator), compared in constant time; failures counted.
//! - `audit` — one log line per change: who (token name), what, old → new.
//! - `dto` — the JSON shapes; `patch` — a JSON body turned into runtime overrides.
//! - `metrics` — `/metrics`: the `metrics` facade's recorder plus gauges and histograms read
//!   from pool-core's counters at scrape time (nothing added to the hot path).
//! - `error` — [`ApiError`]: one JSON error shape, one status per variant.
//! - `state`, `server` — the shared state and the listener.
//!
//! [`ProxyHandle`]: pgtide_pool_core::ProxyHandle
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod audit;
pub mod auth;
mod dto;
mod error;
mod health;
mod lifecycle;
mod listing;
pub mod metrics;
mod patch;
mod pools;
pub mod routes;
mod server;
mod state;
mod time;

pub use auth::{Caller, Tokens};
pub use error::ApiError;
pub use routes::router;
pub use server::{bind, serve};
pub use state::AdminState;

/// The OpenAPI 3 document of this API (`docs/openapi.json`), served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");
