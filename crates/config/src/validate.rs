//! Checks that need more than a type: ranges, cross-field rules, files that must exist.

use std::path::Path;

use crate::config::Config;
use crate::database::ServerTlsMode;
use crate::error::Problem;
use crate::pool::PoolSettings;
use crate::sections::{AuthType, ClientTlsMode};

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

/// Every semantic problem in `config`, each with its key path.
pub fn validate(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    general(config, &mut out);
    for (field, msg) in pool_problems(&config.pool) {
        out.push(Problem::new(format!("pool.{field}"), msg));
    }
    for (name, db) in &config.databases {
        let prefix = format!("databases.{name}");
        if db.host.trim().is_empty() {
            out.push(Problem::new(format!("{prefix}.host"), "must not be empty"));
        } else if db.host.starts_with('/') {
            // libpq reads a leading slash as a Unix-socket directory; pgtide would try to
            // resolve it as a host name and fail at every connect.
            out.push(Problem::new(
                format!("{prefix}.host"),
                format!(
                    "{:?} is a Unix-socket directory; pgtide connects to PostgreSQL over TCP only: \
                     give the server's TCP address (e.g. 127.0.0.1)",
                    db.host
                ),
            ));
        }
        if db.port == 0 {
            out.push(Problem::new(
                format!("{prefix}.port"),
                "must be 1-65535, got 0",
            ));
        }
        if db.dbname.as_deref().is_some_and(|d| d.is_empty()) {
            out.push(Problem::new(
                format!("{prefix}.dbname"),
                "must not be empty",
            ));
        }
        if db.tls.mode == ServerTlsMode::VerifyFull && db.tls.ca_file.is_none() {
            out.push(Problem::new(
                format!("{prefix}.tls.ca_file"),
                "required when tls.mode is \"verify-full\"",
            ));
        }
        file_exists(
            &format!("{prefix}.tls.ca_file"),
            db.tls.ca_file.as_deref(),
            &mut out,
        );
        // Report a pool problem under the database only when the database itself sets one of
        // the keys involved; otherwise it is already reported under `pool`.
        let effective = db.pool_settings(&config.pool);
        let inherited = pool_problems(&config.pool);
        for (field, msg) in pool_problems(&effective) {
            if !inherited.iter().any(|(f, m)| *f == field && *m == msg) {
                out.push(Problem::new(format!("{prefix}.{field}"), msg));
            }
        }
        if db.max_db_connections != 0 && effective.min_size > db.max_db_connections {
            out.push(Problem::new(
                format!("{prefix}.max_db_connections"),
                format!(
                    "{} is below min_size {}: the pool could never reach its minimum",
                    db.max_db_connections, effective.min_size
                ),
            ));
        }
    }
    out
}

fn general(config: &Config, out: &mut Vec<Problem>) {
    let g = &config.pgtide;
    if g.listen.is_empty() {
        out.push(Problem::new("pgtide.listen", "needs at least one address"));
    }
    if g.max_client_conn == 0 {
        out.push(Problem::new("pgtide.max_client_conn", "must be > 0, got 0"));
    }
    if g.max_message_size < 8192 {
        out.push(Problem::new(
            "pgtide.max_message_size",
            format!("must be at least 8192 bytes, got {}", g.max_message_size),
        ));
    }
    if g.workers > 1024 {
        out.push(Problem::new(
            "pgtide.workers",
            format!("at most 1024 threads, got {}", g.workers),
        ));
    }
    if g.breaker_max_backoff.is_zero() {
        out.push(Problem::new("pgtide.breaker_max_backoff", "must be > 0"));
    }
    if g.auth_type != AuthType::Trust && g.auth_file.is_none() && g.auth_query.is_none() {
        out.push(Problem::new(
            "pgtide.auth_file",
            "required when auth_type is not \"trust\" (or set pgtide.auth_query)",
        ));
    }
    file_exists("pgtide.auth_file", g.auth_file.as_deref(), out);
    if g.tls.mode != ClientTlsMode::Disable {
        for (key, file) in [
            ("cert_file", &g.tls.cert_file),
            ("key_file", &g.tls.key_file),
        ] {
            if file.is_none() {
                out.push(Problem::new(
                    format!("pgtide.tls.{key}"),
                    "required when pgtide.tls.mode is not \"disable\"",
                ));
            }
        }
    }
    file_exists("pgtide.tls.cert_file", g.tls.cert_file.as_deref(), out);
    file_exists("pgtide.tls.key_file", g.tls.key_file.as_deref(), out);
    file_exists(
        "admin.tokens_file",
        config.admin.tokens_file.as_deref(),
        out,
    );
    if let Some(state) = config.admin.state_file.as_deref() {
        if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                out.push(Problem::new(
                    "admin.state_file",
                    format!("directory {} does not exist", dir.display()),
                ));
            }
        }
    }
    for directive in config.log.level.split(',').map(str::trim) {
        let Some((_, level)) = directive.rsplit_once('=') else {
            // A bare word is a level or a target (which enables all its levels).
            if directive.is_empty() {
                out.push(Problem::new("log.level", "must not be empty"));
            }
            continue;
        };
        if !LOG_LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            out.push(Problem::new(
                "log.level",
                format!(
                    "invalid directive {directive:?}: expected a level ({}) or target=level",
                    LOG_LEVELS.join("|")
                ),
            ));
        }
    }
}

/// Problems in one set of pool settings, as (field, message).
pub(crate) fn pool_problems(p: &PoolSettings) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if p.max_size == 0 {
        out.push(("max_size", "must be > 0, got 0".to_owned()));
    }
    if p.min_size > p.max_size {
        out.push((
            "min_size",
            format!("{} is greater than max_size {}", p.min_size, p.max_size),
        ));
    }
    for (field, value) in [
        ("acquire_timeout", p.acquire_timeout),
        ("evict_interval", p.evict_interval),
        ("connect_timeout", p.connect_timeout),
        ("adaptive.tick", p.adaptive.tick),
        ("adaptive.budget_interval", p.adaptive.budget_interval),
    ] {
        if value.is_zero() {
            out.push((field, "must be greater than 0s".to_owned()));
        }
    }
    let a = &p.adaptive;
    if a.max_connects_per_tick == 0 {
        out.push((
            "adaptive.max_connects_per_tick",
            "must be > 0, got 0".to_owned(),
        ));
    }
    if !(a.shrink_utilization > 0.0 && a.shrink_utilization < 1.0) {
        out.push((
            "adaptive.shrink_utilization",
            format!(
                "must be between 0 and 1 (exclusive), got {}",
                a.shrink_utilization
            ),
        ));
    }
    if a.saturation_ratio.is_nan() || a.saturation_ratio <= 1.0 {
        out.push((
            "adaptive.saturation_ratio",
            format!("must be greater than 1, got {}", a.saturation_ratio),
        ));
    }
    out
}

fn file_exists(key: &str, path: Option<&Path>, out: &mut Vec<Problem>) {
    if let Some(path) = path {
        if !path.is_file() {
            out.push(Problem::new(
                key,
                format!("file {} does not exist or is not a file", path.display()),
            ));
        }
    }
}
