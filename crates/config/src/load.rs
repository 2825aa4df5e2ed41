//! Layering: built-in defaults < TOML file < `PGTIDE_*` environment < command line.
//!
//! serde stops at the first bad value, but an operator fixing a config wants every problem in one
//! go. So extraction runs in rounds: each error is recorded with its key path and source, the
//! offending key is dropped (falling back to its default), and extraction is retried. Semantic
//! checks ([`crate::validate`]) then run on what parsed, and everything is reported together.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::config::Config;
use crate::error::{ConfigError, Problem};
use crate::validate::validate;

/// Environment variables with this prefix override file values; `__` separates nesting levels:
/// `PGTIDE_POOL__MAX_SIZE=40` sets `pool.max_size`.
pub const ENV_PREFIX: &str = "PGTIDE_";

/// `PGTIDE_*` variables that are not config keys (the daemon reads them itself).
const ENV_IGNORED: &[&str] = &["config"];

/// Key names whose values must never be echoed in an error.
const SECRET_KEYS: &[&str] = &["password", "token", "scram_secret", "md5"];

/// Builds a [`Config`] from its layers. Each layer is optional; later layers win.
#[derive(Debug, Default, Clone)]
pub struct Loader {
    file: Option<PathBuf>,
    skip_env: bool,
    overrides: Dict,
}

impl Loader {
    /// A loader with defaults and the environment, and no file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this TOML file (it must exist).
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Ignores `PGTIDE_*` variables (for tests and `check-config --no-env`).
    pub fn without_env(mut self) -> Self {
        self.skip_env = true;
        self
    }

    /// A command-line override of one dotted key, e.g. (`"pool.max_size"`, `40`).
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        let nested = figment::util::nest(key, value.into());
        if let Value::Dict(_, dict) = nested {
            merge_into(&mut self.overrides, dict);
        }
        self
    }

    /// A `KEY=VALUE` override as typed on the command line: the value is read as a TOML value
    /// (`40`, `true`, `["a", "b"]`) and, failing that, as a plain string (`5s`, `127.0.0.1:1`).
    pub fn set_str(self, key: &str, raw: &str) -> Self {
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .and_then(|v| Value::serialize(v).ok())
            .unwrap_or_else(|| Value::from(raw.to_owned()));
        self.set(key, value)
    }

    /// The directory relative paths in the config are resolved against.
    fn base_dir(&self) -> PathBuf {
        self.file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The merged layers, before extraction. Fails when the file is unreadable or not TOML.
    pub fn figment(&self) -> Result<Figment, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
                path: path.clone(),
                source,
            })?;
            if let Err(e) = toml::from_str::<toml::Table>(&text) {
                return Err(ConfigError::Syntax {
                    path: path.clone(),
                    message: e.to_string().trim_end().replace('\n', " "),
                });
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        if !self.skip_env {
            figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(ENV_IGNORED));
        }
        if !self.overrides.is_empty() {
            figment = figment.merge(CommandLine(self.overrides.clone()));
        }
        Ok(figment)
    }

    /// Loads, resolves relative paths and validates; every problem is reported at once.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let figment = self.figment()?;
        let (config, mut problems) = extract_all(&figment);
        let mut config = config.unwrap_or_default();
        resolve_paths(&mut config, &self.base_dir());
        problems.extend(validate(&config).into_iter().map(|mut p| {
            let path: Vec<String> = p.path.split('.').map(str::to_owned).collect();
            p.source = source_of(&figment, &path);
            p
        }));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// Deep-merges `from` into `into`: nested tables combine, leaves are replaced.
fn merge_into(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, incoming)) => {
                merge_into(existing, incoming)
            }
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

/// The command-line layer, named so errors say where a bad value came from.
struct CommandLine(Dict);

impl Provider for CommandLine {
    fn metadata(&self) -> Metadata {
        Metadata::named("command line")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.0.clone()))
    }
}

/// Extracts a [`Config`], dropping each bad key and retrying, so all type errors surface.
fn extract_all(original: &Figment) -> (Option<Config>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut figment = original.clone();
    // Each round removes at least one key, so this bounds the loop on any input.
    for _ in 0..256 {
        let errors = match figment.extract::<Config>() {
            Ok(config) => return (Some(config), problems),
            Err(errors) => errors,
        };
        let mut tree = match figment.extract::<Dict>() {
            Ok(tree) => tree,
            Err(_) => return (None, problems),
        };
        let mut removed_any = false;
        for error in errors {
            let mut path = error.path.clone();
            if let figment::error::Kind::UnknownField(field, _) = &error.kind {
                if path.last() != Some(field) {
                    path.push(field.clone());
                }
            }
            problems.push(to_problem(original, &error, &path));
            removed_any |= remove_path(&mut tree, &path);
        }
        if !removed_any {
            return (None, problems);
        }
        figment = Figment::from(Serialized::defaults(tree));
    }
    (None, problems)
}

fn to_problem(original: &Figment, error: &figment::Error, path: &[String]) -> Problem {
    let key = path.join(".");
    let is_secret = path
        .last()
        .is_some_and(|k| SECRET_KEYS.contains(&k.as_str()));
    let message = if is_secret {
        "invalid value (not shown: it is a secret)".to_owned()
    } else {
        error.kind.to_string()
    };
    // Retry rounds extract from a rebuilt tree whose metadata names a Rust type; the original
    // layers know where the key really came from.
    let source = source_of(original, path);
    Problem {
        path: key,
        message,
        source,
    }
}

/// Where the value at `path` came from, per the original layers.
fn source_of(original: &Figment, path: &[String]) -> Option<String> {
    original
        .find_metadata(&path.join("."))
        .filter(|m| !m.name.contains("Serialized") && !m.name.contains("BTreeMap"))
        .map(|m| describe_source(m, path))
}

fn describe_source(metadata: &Metadata, path: &[String]) -> String {
    match &metadata.source {
        Some(figment::Source::File(file)) => format!("{}", file.display()),
        _ if metadata.name.contains("environment") => format!(
            "environment variable {ENV_PREFIX}{}",
            path.join("__").to_ascii_uppercase()
        ),
        _ => metadata.name.to_string(),
    }
}

/// Removes the value at `path` from `tree`; false when there is nothing to remove.
fn remove_path(tree: &mut Dict, path: &[String]) -> bool {
    match path {
        [] => false,
        [last] => tree.remove(last).is_some(),
        [first, rest @ ..] => match tree.get_mut(first) {
            Some(Value::Dict(_, inner)) => remove_path(inner, rest),
            Some(_) => tree.remove(first).is_some(),
            None => false,
        },
    }
}

/// Relative paths in the config are relative to the config file's directory, not to wherever
/// the daemon happens to be started from.
fn resolve_paths(config: &mut Config, base: &Path) {
    let fix = |p: &mut Option<PathBuf>| {
        if let Some(path) = p {
            if path.is_relative() && !base.as_os_str().is_empty() {
                *path = base.join(&*path);
            }
        }
    };
    fix(&mut config.pgtide.auth_file);
    fix(&mut config.pgtide.tls.cert_file);
    fix(&mut config.pgtide.tls.key_file);
    fix(&mut config.admin.tokens_file);
    fix(&mut config.admin.state_file);
    for db in config.databases.values_mut() {
        fix(&mut db.tls.ca_file);
    }
}
