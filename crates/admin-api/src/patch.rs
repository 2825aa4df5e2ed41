//! `PATCH /v1/pools/{database}/{user}`: a JSON merge patch of a pool's settings turned into
//! runtime overrides.
//!
//! Keys are `[pool]`'s (`max_size`, `acquire_timeout`, `adaptive.enabled`); nested objects
//! (`{"adaptive": {"enabled": false}}`) and dotted keys mean the same. A value sets an
//! override, `null` removes it (the configuration's value is in force again), as in RFC 7396.
//! A patch applies whole or not at all: pool-core checks one key at a time, so the keys are
//! applied in rounds until none is left or a round makes no progress (a patch raising both
//! `min_size` and `max_size` works in either order); then every key applied is rolled back and
//! the problems of the last round are returned, each with its key.

use pgtide_config::InForce;
use pgtide_pool_core::overrides::OverrideError;
use pgtide_pool_core::Shared;

use crate::error::{ApiError, ProblemDto};

/// One key of a patch: a new override, or `None` to remove it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `[pool]`'s key.
    pub key: String,
    /// The value, or removal.
    pub value: Option<toml::Value>,
}

/// A change that was applied: what it replaced.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The change.
    pub change: Change,
    /// The override before (for rollback), `None` when there was none.
    pub prior_override: Option<toml::Value>,
    /// The setting in force before, for the audit line.
    pub before: Option<InForce>,
}

/// The changes in a JSON body; every malformed key at once.
pub fn changes(body: &serde_json::Value) -> Result<Vec<Change>, ApiError> {
    let serde_json::Value::Object(map) = body else {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object of settings, e.g. {\"max_size\": 10}".to_owned(),
        ));
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    flatten("", map, &mut out, &mut problems);
    if !problems.is_empty() {
        return Err(invalid(problems));
    }
    if out.is_empty() {
        return Err(ApiError::BadRequest("the patch changes nothing".to_owned()));
    }
    Ok(out)
}

fn flatten(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<Change>,
    problems: &mut Vec<ProblemDto>,
) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(inner) => flatten(&key, inner, out, problems),
            serde_json::Value::Null => out.push(Change { key, value: None }),
            other => match to_toml(other) {
                Ok(value) => out.push(Change {
                    key,
                    value: Some(value),
                }),
                Err(message) => problems.push(ProblemDto { key, message }),
            },
        }
    }
}

/// A JSON value as the TOML value the config file would hold.
pub fn to_toml(v: &serde_json::Value) -> Result<toml::Value, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(_)) if n.is_u64() => return Err(format!("{n} is out of range")),
            (None, Some(f)) => toml::Value::Float(f),
            (None, None) => return Err(format!("{n} is not a number TOML can hold")),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => toml::Value::Array(items.iter().map(to_toml).collect::<Result<_, _>>()?),
        J::Null => {
            return Err(
                "null is only allowed as a whole value (it removes the override)".to_owned(),
            )
        }
        J::Object(_) => return Err("nested objects are only allowed as settings groups".to_owned()),
    })
}

fn invalid(problems: Vec<ProblemDto>) -> ApiError {
    ApiError::Invalid {
        code: "invalid_limits",
        message: format!(
            "the patch was refused, nothing changed: {}",
            problems
                .iter()
                .map(|p| format!("{}: {}", p.key, p.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        problems,
    }
}

fn unknown_pool(database: &str) -> ApiError {
    ApiError::not_found(format!(
        "no pool for database {database:?}: it is not configured"
    ))
}

/// Applies `changes` to the pool (`database`, `user`) as a whole; what each replaced.
pub fn apply(
    shared: &Shared,
    database: &str,
    user: &str,
    changes: Vec<Change>,
) -> Result<Vec<Applied>, ApiError> {
    let pool = shared
        .pool_for(database, user)
        .ok_or_else(|| unknown_pool(database))?;
    let before = pool.in_force();
    let prior = pool.overrides();
    let mut pending = changes;
    let mut applied: Vec<Applied> = Vec::new();
    loop {
        let mut failed = Vec::new();
        let mut problems = Vec::new();
        let round = pending.len();
        for change in pending.drain(..) {
            match one(shared, database, user, &change) {
                Ok(()) => applied.push(Applied {
                    prior_override: prior
                        .iter()
                        .find(|(k, _)| *k == change.key)
                        .map(|(_, v)| v.clone()),
                    before: before.iter().find(|v| v.key == change.key).cloned(),
                    change,
                }),
                Err(OverrideError::UnknownPool { database, .. }) => {
                    rollback(shared, database.as_str(), user, &applied);
                    return Err(unknown_pool(&database));
                }
                Err(OverrideError::Invalid { problems: p }) => {
                    problems = p.iter().map(ProblemDto::from).collect();
                    failed.push(change);
                }
            }
        }
        if failed.is_empty() {
            return Ok(applied);
        }
        if failed.len() == round {
            rollback(shared, database, user, &applied);
            let mut all: Vec<ProblemDto> = Vec::new();
            // Each failing key's own problems, checked alone against the state before.
            for change in &failed {
                if let Err(OverrideError::Invalid { problems: p }) =
                    one(shared, database, user, change)
                {
                    all.extend(p.iter().map(ProblemDto::from));
                } else {
                    // It fits alone but not with the others: undo it and name it.
                    undo(
                        shared,
                        database,
                        user,
                        change,
                        &prior_of(&prior, &change.key),
                    );
                    all.push(ProblemDto {
                        key: change.key.clone(),
                        message: "refused together with the other keys of this patch".to_owned(),
                    });
                }
            }
            if all.is_empty() {
                all = problems;
            }
            all.dedup();
            return Err(invalid(all));
        }
        pending = failed;
    }
}

fn prior_of(prior: &pgtide_config::PoolOverrides, key: &str) -> Option<toml::Value> {
    prior
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.clone())
}

fn one(shared: &Shared, database: &str, user: &str, change: &Change) -> Result<(), OverrideError> {
    match &change.value {
        Some(v) => shared
            .set_override(database, user, &change.key, v.clone())
            .map(|_| ()),
        None => shared
            .clear_override(database, user, &change.key)
            .map(|_| ()),
    }
}

fn undo(shared: &Shared, database: &str, user: &str, change: &Change, prior: &Option<toml::Value>) {
    let result = match prior {
        Some(v) => shared
            .set_override(database, user, &change.key, v.clone())
            .map(|_| ()),
        None => shared
            .clear_override(database, user, &change.key)
            .map(|_| ()),
    };
    if let Err(e) = result {
        // Each state restored was in force a moment ago, so this should not happen; say so
        // loudly if it does.
        tracing::error!(key = %change.key, error = %e, "admin API: rolling back a refused patch failed");
    }
}

/// Restores, newest first, what `applied` replaced: each step returns to a state that was in
/// force, so every step is valid.
fn rollback(shared: &Shared, database: &str, user: &str, applied: &[Applied]) {
    for a in applied.iter().rev() {
        undo(shared, database, user, &a.change, &a.prior_override);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_and_dotted_keys_flatten_and_null_removes() {
        let c = changes(&json!({
            "max_size": 5,
            "acquire_timeout": "2s",
            "adaptive": {"enabled": false},
            "query_timeout": null,
            "adaptive.shrink_utilization": 0.3
        }))
        .unwrap();
        let find = |k: &str| c.iter().find(|x| x.key == k).unwrap().value.clone();
        assert_eq!(find("max_size"), Some(toml::Value::Integer(5)));
        assert_eq!(find("acquire_timeout"), Some("2s".into()));
        assert_eq!(find("adaptive.enabled"), Some(false.into()));
        assert_eq!(find("adaptive.shrink_utilization"), Some(0.3.into()));
        assert_eq!(find("query_timeout"), None);
        assert!(changes(&json!([1])).is_err());
        assert!(changes(&json!({})).is_err());
        let e = changes(&json!({"max_size": 18446744073709551615u64, "x": [null]})).unwrap_err();
        match e {
            ApiError::Invalid { problems, .. } => assert_eq!(problems.len(), 2),
            other => panic!("{other:?}"),
        }
    }
}
