//! PostgreSQL wire protocol v3, sans-IO.
#![forbid(unsafe_code)]
