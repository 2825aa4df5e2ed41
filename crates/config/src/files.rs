//! The auth file (`[[users]]`) and the admin tokens file (`[[tokens]]`): secrets kept apart from
//! the main config so the config can be shared and reviewed without them.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ConfigError, Problem};
use crate::secret::Secret;

/// `users.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    /// One entry per user.
    #[serde(default)]
    pub users: Vec<AuthUser>,
}

/// A user and one way to check its password.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthUser {
    /// User name as clients send it.
    pub name: String,
    /// Plain password: works with every auth type and lets pgtide log in to the server as this
    /// user.
    pub password: Option<Secret>,
    /// `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`, as in `pg_authid`.
    pub scram_secret: Option<Secret>,
    /// `md5<hex>`, as in `pg_authid`; only usable with `auth_type = "md5"`.
    pub md5: Option<Secret>,
}

impl AuthFile {
    /// Reads and checks an auth file; all problems are reported together.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: AuthFile = read_toml(path)?;
        let mut problems = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, u) in file.users.iter().enumerate() {
            let key = format!("users[{i}]");
            if u.name.is_empty() {
                problems.push(Problem::new(format!("{key}.name"), "must not be empty"));
            }
            if !seen.insert(u.name.as_str()) {
                problems.push(Problem::new(
                    format!("{key}.name"),
                    format!("user {:?} is listed twice", u.name),
                ));
            }
            if u.password.is_none() && u.scram_secret.is_none() && u.md5.is_none() {
                problems.push(Problem::new(
                    key.clone(),
                    "needs one of password, scram_secret or md5",
                ));
            }
            if let Some(s) = &u.scram_secret {
                if !s.expose().starts_with("SCRAM-SHA-256$") {
                    problems.push(Problem::new(
                        format!("{key}.scram_secret"),
                        "must start with \"SCRAM-SHA-256$\"",
                    ));
                }
            }
            if let Some(m) = &u.md5 {
                let hex = m.expose().strip_prefix("md5").unwrap_or("");
                if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    problems.push(Problem::new(
                        format!("{key}.md5"),
                        "must be \"md5\" followed by 32 hex digits",
                    ));
                }
            }
        }
        with_source(problems, path).map(|()| file)
    }

    /// The entry for `name`.
    pub fn user(&self, name: &str) -> Option<&AuthUser> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// What an admin token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET only.
    Viewer,
    /// Everything, including limit changes and shutdown.
    Operator,
}

/// `admin-tokens.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TokensFile {
    /// One entry per token.
    #[serde(default)]
    pub tokens: Vec<AdminToken>,
}

/// A bearer token; `name` is what the audit log shows, never the token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminToken {
    /// Who holds it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The bearer token itself.
    pub token: Secret,
}

impl TokensFile {
    /// Reads and checks a tokens file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file: TokensFile = read_toml(path)?;
        let mut problems = Vec::new();
        for (i, t) in file.tokens.iter().enumerate() {
            if t.token.expose().len() < 16 {
                problems.push(Problem::new(
                    format!("tokens[{i}].token"),
                    "must be at least 16 characters",
                ));
            }
        }
        with_source(problems, path).map(|()| file)
    }
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().replace('\n', " "),
    })
}

fn with_source(mut problems: Vec<Problem>, path: &Path) -> Result<(), ConfigError> {
    if problems.is_empty() {
        return Ok(());
    }
    for p in &mut problems {
        p.source = Some(path.display().to_string());
    }
    Err(ConfigError::Invalid(problems))
}
