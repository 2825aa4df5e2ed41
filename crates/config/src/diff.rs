//! What a reload changes, and which of those changes need a restart.
//!
//! Pools, databases, users, timeouts and the log level apply live; listening sockets, TLS
//! material and the log format are bound at start-up and need a restart. Values are compared
//! after serialization, so every key is covered without a hand-kept list; secrets (which
//! serialize redacted) are compared separately.

use std::collections::BTreeSet;

use figment::value::Value;

use crate::config::Config;

/// Whether a changed key can take effect without restarting pgtide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Apply {
    /// The running daemon applies it on reload.
    Live,
    /// It takes effect only after a restart; a reload keeps the old value and says so.
    Restart,
}

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// Dotted key path, e.g. `databases.app.max_size`.
    pub path: String,
    /// Live or restart.
    pub apply: Apply,
}

/// Key prefixes bound at start-up.
const RESTART_KEYS: &[&str] = &[
    "pgtide.listen",
    "pgtide.tls",
    "pgtide.workers",
    "admin.listen",
    "log.format",
];

/// The changes from `old` to `new`, sorted by path.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut paths = BTreeSet::new();
    match (Value::serialize(old), Value::serialize(new)) {
        (Ok(a), Ok(b)) => walk("", &a, &b, &mut paths),
        _ => {
            paths.insert(String::new());
        }
    }
    for (name, db) in &new.databases {
        if let Some(before) = old.databases.get(name) {
            if before.password != db.password {
                paths.insert(format!("databases.{name}.password"));
            }
        }
    }
    let old_q = old.pgtide.auth_query.as_ref().map(|q| &q.password);
    let new_q = new.pgtide.auth_query.as_ref().map(|q| &q.password);
    if old_q != new_q {
        paths.insert("pgtide.auth_query.password".to_owned());
    }
    paths
        .into_iter()
        .map(|path| {
            let apply = if RESTART_KEYS
                .iter()
                .any(|k| path == *k || path.starts_with(&format!("{k}.")))
            {
                Apply::Restart
            } else {
                Apply::Live
            };
            Change { path, apply }
        })
        .collect()
}

/// True when any change in `changes` needs a restart.
pub fn needs_restart(changes: &[Change]) -> bool {
    changes.iter().any(|c| c.apply == Apply::Restart)
}

fn walk(prefix: &str, a: &Value, b: &Value, out: &mut BTreeSet<String>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (a, b) {
        (Value::Dict(_, da), Value::Dict(_, db)) => {
            for key in da.keys().chain(db.keys()).collect::<BTreeSet<_>>() {
                match (da.get(key), db.get(key)) {
                    (Some(x), Some(y)) => walk(&join(key), x, y, out),
                    _ => {
                        out.insert(join(key));
                    }
                }
            }
        }
        _ if a == b => {}
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}
