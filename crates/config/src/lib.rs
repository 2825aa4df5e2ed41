//! pgtide's configuration: typed, documented, strict and layered.
//!
//! Layers, later wins: built-in defaults < TOML file < `PGTIDE_*` environment variables
//! (`__` for nesting: `PGTIDE_POOL__MAX_SIZE=40`) < command-line flags. Unknown keys are errors;
//! [`Loader::load`] reports every problem at once, each with its key path and where the value
//! came from. Secrets are wrapped in [`Secret`] and never printed.
//!
//! # Layout
//! - `config` — [`Config`], the root, and per-(database, user) pool settings.
//! - `sections` — `[pgtide]`, `[admin]`, `[log]`, `[users.NAME]`.
//! - `pool` — `[pool]` defaults and `[pool.adaptive]`.
//! - `database` — `[databases.NAME]`, server TLS, per-database overrides.
//! - `duration`, `secret` — value types.
//! - `load` — the layering and error collection; `validate` — semantic checks.
//! - `diff` — what a reload changes and whether it applies live.
//! - `files` — the auth file and the admin tokens file.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod database;
mod diff;
mod duration;
mod error;
mod files;
mod load;
mod overrides;
mod pool;
mod secret;
mod sections;
mod validate;

pub use config::Config;
pub use database::{DatabaseConfig, ServerTls, ServerTlsMode};
pub use diff::{diff, needs_restart, Apply, Change};
pub use duration::{format_duration, parse_duration, DurationParseError, HumanDuration};
pub use error::{ConfigError, Problem};
pub use files::{AdminToken, AuthFile, AuthUser, Role, TokensFile};
pub use load::{Loader, ENV_PREFIX};
pub use overrides::{in_force, InForce, PoolOverrides, Source};
pub use pool::{AdaptiveSettings, PoolMode, PoolSettings};
pub use secret::{Secret, REDACTED};
pub use sections::{
    Admin, AuthQuery, AuthType, ClientTls, ClientTlsMode, General, LogFormat, Logging, UserConfig,
};
pub use validate::validate;
