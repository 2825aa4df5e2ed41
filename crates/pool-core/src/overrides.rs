//! Runtime overrides of pool limits, process-wide: set and cleared by pool, re-applied to a
//! pool when it is created (also after a restart, from `admin.state_file`), kept across
//! reloads, and written to the state file after every change.

use pgtide_config::{InForce, PoolOverrides, Problem};

use crate::pool::Pool;
use crate::shared::Shared;
use crate::sync::lock;

/// Why an override was not set.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    /// No pool: the database is not configured.
    #[error("no pool {database}/{user}: database {database:?} is not configured")]
    UnknownPool {
        /// The database.
        database: String,
        /// The user.
        user: String,
    },
    /// The value is refused: every problem, with its key.
    #[error("override refused: {}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// What is wrong.
        problems: Vec<Problem>,
    },
}

impl Shared {
    /// Overrides one setting of the pool (`database`, `user`) at run time (the pool is created
    /// if it does not exist yet); returns every setting in force with its source.
    pub fn set_override(
        &self,
        database: &str,
        user: &str,
        key: &str,
        value: toml::Value,
    ) -> Result<Vec<InForce>, OverrideError> {
        let pool = self.known_pool(database, user)?;
        pool.set_override(key, value)
            .map_err(|problems| OverrideError::Invalid { problems })?;
        self.keep(&pool);
        tracing::info!(pool = %pool.name(), key, "runtime override set");
        Ok(pool.in_force())
    }

    /// Removes an override (the configuration's value is in force again); whether there was one.
    pub fn clear_override(
        &self,
        database: &str,
        user: &str,
        key: &str,
    ) -> Result<bool, OverrideError> {
        let pool = self.known_pool(database, user)?;
        let had = pool.clear_override(key);
        if had {
            self.keep(&pool);
            tracing::info!(pool = %pool.name(), key, "runtime override cleared");
        }
        Ok(had)
    }

    /// Every setting in force for the pool, with its source.
    pub fn limits(&self, database: &str, user: &str) -> Result<Vec<InForce>, OverrideError> {
        Ok(self.known_pool(database, user)?.in_force())
    }

    /// Applies the overrides kept for a pool that was just created.
    pub(crate) fn restore_overrides(&self, pool: &Pool) {
        let kept = lock(&self.overrides).pools.get(pool.name()).cloned();
        let Some(kept) = kept else { return };
        if let Err(problems) = pool.replace_overrides(kept) {
            tracing::warn!(pool = %pool.name(), problems = ?problems, "runtime overrides not restored: they do not fit the configuration");
            lock(&self.overrides).pools.remove(pool.name());
            self.persist_overrides();
        }
    }

    /// Writes the overrides to `admin.state_file`, when one is configured.
    pub(crate) fn persist_overrides(&self) {
        let Some(path) = self.config().admin.state_file.clone() else {
            return;
        };
        let state = lock(&self.overrides).clone();
        if let Err(e) = crate::state_file::save(&path, &state) {
            tracing::error!(error = %e, "runtime overrides not saved");
        }
    }

    fn keep(&self, pool: &Pool) {
        let now: PoolOverrides = pool.overrides();
        {
            let mut state = lock(&self.overrides);
            if now.is_empty() {
                state.pools.remove(pool.name());
            } else {
                state.pools.insert(pool.name().to_owned(), now);
            }
        }
        self.persist_overrides();
    }

    fn known_pool(
        &self,
        database: &str,
        user: &str,
    ) -> Result<std::sync::Arc<Pool>, OverrideError> {
        self.pool_for(database, user)
            .ok_or_else(|| OverrideError::UnknownPool {
                database: database.to_owned(),
                user: user.to_owned(),
            })
    }
}
