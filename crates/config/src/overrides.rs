//! Runtime overrides of a pool's settings, and where each value in force comes from.
//!
//! A pool's settings come in layers: the defaults, the configuration (the `[pool]` section with
//! its `[databases.NAME]` overrides, from the file, `PGTIDE_*` or `--set`), runtime overrides
//! (set through an API call, later the admin API; kept across reloads and, with
//! `admin.state_file`, across restarts), and — for the pool's size only — the adaptive
//! controller's target, which pool-core keeps. An override names a key as `[pool]` spells it
//! (`max_size`, `acquire_timeout`, `adaptive.enabled`) and holds a TOML value; applying
//! overrides goes through the same serde types and checks as the file, so an override can never
//! make a pool's settings something the file could not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::pool::PoolSettings;
use crate::validate::pool_problems;

/// One pool's runtime overrides: key → value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PoolOverrides(BTreeMap<String, toml::Value>);

/// Where a value in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// pgtide's default: nothing set it.
    Default,
    /// The configuration (file, environment or command line).
    Config,
    /// A runtime override.
    Override,
    /// The adaptive controller (the pool's size target).
    Controller,
}

/// One setting in force.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InForce {
    /// The key, as `[pool]` spells it (`adaptive.enabled` for nested ones).
    pub key: String,
    /// Its value.
    pub value: toml::Value,
    /// Where it comes from.
    pub source: Source,
    /// The configuration's value when an override masks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked: Option<toml::Value>,
}

impl PoolOverrides {
    /// No overrides.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The overridden keys and values.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &toml::Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Overrides `key` with `value` on top of `base` (the configuration's settings); every
    /// problem of the result, with `key` paths, when it is refused (and nothing changes).
    pub fn set(
        &mut self,
        key: &str,
        value: toml::Value,
        base: &PoolSettings,
    ) -> Result<PoolSettings, Vec<Problem>> {
        let mut next = self.clone();
        next.0.insert(key.to_owned(), value);
        let settings = next.apply(base)?;
        *self = next;
        Ok(settings)
    }

    /// Removes the override of `key`; whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.0.remove(key).is_some()
    }

    /// `base` with these overrides, checked as the file's settings are.
    pub fn apply(&self, base: &PoolSettings) -> Result<PoolSettings, Vec<Problem>> {
        if self.0.is_empty() {
            return Ok(base.clone());
        }
        let mut table = to_table(base);
        for (key, value) in &self.0 {
            if !insert(&mut table, key, value.clone()) {
                return Err(vec![Problem::new(
                    key.clone(),
                    "no such pool setting".to_owned(),
                )]);
            }
        }
        let settings: PoolSettings =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    vec![Problem::new(self.keys(), e.message().to_owned())]
                })?;
        let problems: Vec<Problem> = pool_problems(&settings)
            .into_iter()
            .map(|(field, msg)| Problem::new(field, msg))
            .collect();
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(problems)
        }
    }

    /// The keys that mask a different configuration value in `base`.
    pub fn masking(&self, base: &PoolSettings) -> Vec<String> {
        let table = to_table(base);
        self.0
            .iter()
            .filter(|(k, v)| lookup(&table, k) != Some(*v))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn keys(&self) -> String {
        self.0.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// Every setting of a pool in force, with its source: `base` is the configuration's settings,
/// `overrides` the runtime layer; what the defaults say decides between `Default` and `Config`.
pub fn in_force(base: &PoolSettings, overrides: &PoolOverrides) -> Vec<InForce> {
    let defaults = to_table(&PoolSettings::default());
    let config = to_table(base);
    let effective = overrides.apply(base).unwrap_or_else(|_| base.clone());
    let mut out = Vec::new();
    flatten("", &to_table(&effective), &mut |key, value| {
        let configured = lookup(&config, key);
        let (source, masked) = match overrides.0.get(key) {
            Some(_) => (
                Source::Override,
                configured.filter(|c| *c != value).cloned(),
            ),
            None if lookup(&defaults, key) == Some(value) => (Source::Default, None),
            None => (Source::Config, None),
        };
        out.push(InForce {
            key: key.to_owned(),
            value: value.clone(),
            source,
            masked,
        });
    });
    out
}

fn to_table(settings: &PoolSettings) -> toml::Table {
    match toml::Value::try_from(settings) {
        Ok(toml::Value::Table(t)) => t,
        // PoolSettings is a struct of plain values: it always serializes to a table.
        _ => toml::Table::new(),
    }
}

/// Sets a dotted key that already exists in `table`; false when there is no such key.
fn insert(table: &mut toml::Table, key: &str, value: toml::Value) -> bool {
    match key.split_once('.') {
        None => match table.get_mut(key) {
            Some(slot) if !slot.is_table() => {
                *slot = value;
                true
            }
            _ => false,
        },
        Some((head, rest)) => match table.get_mut(head) {
            Some(toml::Value::Table(inner)) => insert(inner, rest, value),
            _ => false,
        },
    }
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a toml::Value> {
    match key.split_once('.') {
        None => table.get(key),
        Some((head, rest)) => match table.get(head)? {
            toml::Value::Table(inner) => lookup(inner, rest),
            _ => None,
        },
    }
}

fn flatten(prefix: &str, table: &toml::Table, f: &mut impl FnMut(&str, &toml::Value)) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(inner) => flatten(&key, inner, f),
            _ => f(&key, v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(n: i64) -> toml::Value {
        toml::Value::Integer(n)
    }

    #[test]
    fn an_override_applies_masks_and_is_checked_like_the_file() {
        let base = PoolSettings {
            max_size: 40,
            ..PoolSettings::default()
        };
        let mut o = PoolOverrides::new();
        let s = o.set("max_size", int(10), &base).unwrap();
        assert_eq!(s.max_size, 10);
        o.set("acquire_timeout", "250ms".into(), &base).unwrap();
        o.set("adaptive.enabled", false.into(), &base).unwrap();
        let s = o.apply(&base).unwrap();
        assert_eq!(
            s.acquire_timeout.get(),
            std::time::Duration::from_millis(250)
        );
        assert!(!s.adaptive.enabled);
        assert_eq!(
            o.masking(&base),
            ["acquire_timeout", "adaptive.enabled", "max_size"]
        );
        // Refused, with nothing changed: unknown key, wrong type, a rule of the file's.
        let before = o.clone();
        assert!(o.set("max_sizes", int(1), &base).is_err());
        assert!(o.set("max_size", "many".into(), &base).is_err());
        let e = o.set("min_size", int(11), &base).unwrap_err();
        assert!(e.iter().any(|p| p.path == "min_size"), "{e:?}");
        assert_eq!(o, before);
    }

    #[test]
    fn every_value_in_force_names_its_source() {
        let base = PoolSettings {
            max_size: 40,
            min_size: 2,
            ..PoolSettings::default()
        };
        let mut o = PoolOverrides::new();
        o.set("min_size", int(3), &base).unwrap();
        let all = in_force(&base, &o);
        let get = |k: &str| all.iter().find(|v| v.key == k).unwrap().clone();
        assert_eq!(get("max_size").source, Source::Config);
        assert_eq!(get("max_size").value, int(40));
        assert_eq!(get("min_size").source, Source::Override);
        assert_eq!(get("min_size").masked, Some(int(2)));
        assert_eq!(get("acquire_timeout").source, Source::Default);
        assert_eq!(get("adaptive.enabled").source, Source::Default);
    }
}
