//! The root of the configuration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::database::DatabaseConfig;
use crate::pool::{PoolMode, PoolSettings};
use crate::sections::{Admin, General, Logging, UserConfig};

/// Everything pgtide reads from its config file, environment and command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[pgtide]`: listener, client limits and auth.
    pub pgtide: General,
    /// `[admin]`: the HTTP API.
    pub admin: Admin,
    /// `[pool]`: defaults for every pool.
    pub pool: PoolSettings,
    /// `[databases.NAME]`: the databases clients may connect to.
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[users.NAME]`: per-user caps.
    pub users: BTreeMap<String, UserConfig>,
    /// `[log]`.
    pub log: Logging,
}

impl Config {
    /// The settings of the pool for (`database`, `user`): `[pool]`, then the database's
    /// overrides, then the user's mode. `None` when the database is not configured.
    pub fn pool_settings(&self, database: &str, user: &str) -> Option<PoolSettings> {
        let db = self.databases.get(database)?;
        let mut settings = db.pool_settings(&self.pool);
        if let Some(mode) = self.users.get(user).and_then(|u| u.mode) {
            settings.mode = mode;
        }
        Some(settings)
    }

    /// The mode a (database, user) pool runs in, for callers that need nothing else.
    pub fn pool_mode(&self, database: &str, user: &str) -> Option<PoolMode> {
        self.pool_settings(database, user).map(|s| s.mode)
    }
}
