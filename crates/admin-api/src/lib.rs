//! pgtide's admin HTTP API.
//!
//! The axum router, `/metrics`, `/healthz` and `/readyz` land with the admin API issue; the crate
//! exists now so that the workspace layout is the one the brief fixes.
#![forbid(unsafe_code)]
