//! A pool's limits in layers: the configuration, runtime overrides, and the controller's size
//! target. A reload replaces only the configuration layer; overrides and the target survive it.
//! The settings in force are recomputed from the layers after every change, and sessions see
//! them through the settings version (one atomic load per transaction).

use std::sync::atomic::Ordering::Release;
use std::sync::Arc;

use pgtide_config::{in_force, InForce, PoolOverrides, PoolSettings, Problem, Source};

use super::{lock, Pool};
use crate::server::ServerTarget;

/// The layers behind a pool's settings.
#[derive(Debug, Clone)]
pub(super) struct Layers {
    /// From the configuration (file, environment, command line); replaced by reloads.
    pub config: PoolSettings,
    /// Set at run time (API), kept across reloads.
    pub overrides: PoolOverrides,
    /// The adaptive controller's size, kept within `[min_size, max_size]` when applied.
    pub size_target: Option<u32>,
}

/// What a reload did to one pool's overrides.
#[derive(Debug, Clone, Default)]
pub struct PoolReload {
    /// Overridden keys whose configuration value differs: the override still decides.
    pub masked: Vec<String>,
    /// Problems that made pgtide drop this pool's overrides: with the new configuration they
    /// were no longer valid together (e.g. an overridden `min_size` above a lowered
    /// `max_size`). The configuration's values are in force then.
    pub dropped: Vec<Problem>,
}

/// The number of servers the pool may hold now: the controller's target inside
/// `[min_size, max_size]`, or `max_size` without one.
pub fn size_in_force(settings: &PoolSettings, target: Option<u32>) -> u32 {
    target.map_or(settings.max_size, |t| {
        t.clamp(settings.min_size.max(1), settings.max_size.max(1))
    })
}

impl Pool {
    /// Applies a reloaded configuration live: limits change without dropping any client;
    /// connections already open keep their target until they are next recycled. Runtime
    /// overrides and the controller's target are kept.
    pub fn reconfigure(&self, target: ServerTarget, config: PoolSettings) -> PoolReload {
        let mut layers = lock(&self.layers);
        layers.config = config;
        let mut report = PoolReload::default();
        let effective = match layers.overrides.apply(&layers.config) {
            Ok(s) => s,
            Err(problems) => {
                layers.overrides = PoolOverrides::new();
                report.dropped = problems;
                layers.config.clone()
            }
        };
        report.masked = layers.overrides.masking(&layers.config);
        *lock(&self.target) = Arc::new(target);
        self.install(&layers, effective);
        report
    }

    /// Overrides one setting at run time (`max_size`, `acquire_timeout`, `adaptive.enabled`,
    /// ... as `[pool]` spells them); every problem when it is refused, and nothing changes.
    pub fn set_override(&self, key: &str, value: toml::Value) -> Result<(), Vec<Problem>> {
        let mut layers = lock(&self.layers);
        let config = layers.config.clone();
        let effective = layers.overrides.set(key, value, &config)?;
        self.install(&layers, effective);
        Ok(())
    }

    /// Removes the override of `key` (the configuration's value is in force again); whether
    /// there was one.
    pub fn clear_override(&self, key: &str) -> bool {
        let mut layers = lock(&self.layers);
        if !layers.overrides.remove(key) {
            return false;
        }
        let effective = match layers.overrides.apply(&layers.config) {
            Ok(s) => s,
            Err(_) => {
                // Removing one override cannot make the others invalid unless they leaned on
                // it; then none of them stays.
                layers.overrides = PoolOverrides::new();
                layers.config.clone()
            }
        };
        self.install(&layers, effective);
        true
    }

    /// Replaces every override at once (state file at start-up); refused as a whole.
    pub fn replace_overrides(&self, overrides: PoolOverrides) -> Result<(), Vec<Problem>> {
        let mut layers = lock(&self.layers);
        let effective = overrides.apply(&layers.config)?;
        layers.overrides = overrides;
        self.install(&layers, effective);
        Ok(())
    }

    /// The runtime overrides now.
    pub fn overrides(&self) -> PoolOverrides {
        lock(&self.layers).overrides.clone()
    }

    /// Sets (or, with `None`, clears) the controller's size target; the pool grows or
    /// shrinks to it within `[min_size, max_size]` without dropping a client.
    pub fn set_size_target(&self, target: Option<u32>) {
        let mut layers = lock(&self.layers);
        layers.size_target = target;
        let effective = (*self.settings()).clone();
        self.install(&layers, effective);
    }

    /// The controller's size target, if it set one.
    pub fn size_target(&self) -> Option<u32> {
        lock(&self.layers).size_target
    }

    /// Every setting in force with its source, and the size the pool may reach now (`size`,
    /// from the controller when it set a target): what the admin API serves as is.
    pub fn in_force(&self) -> Vec<InForce> {
        let layers = lock(&self.layers);
        let mut all = in_force(&layers.config, &layers.overrides);
        let effective = self.settings();
        all.push(InForce {
            key: "size".to_owned(),
            value: toml::Value::Integer(i64::from(size_in_force(&effective, layers.size_target))),
            source: if layers.size_target.is_some() {
                Source::Controller
            } else {
                all.iter()
                    .find(|v| v.key == "max_size")
                    .map_or(Source::Default, |v| v.source)
            },
            masked: None,
        });
        all
    }

    /// Puts `effective` in force (the caller holds the layers lock, so changes apply in order).
    fn install(&self, layers: &Layers, effective: PoolSettings) {
        self.set_max_size(size_in_force(&effective, layers.size_target));
        *lock(&self.settings) = Arc::new(effective);
        self.settings_version.fetch_add(1, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_is_kept_inside_min_and_max() {
        let s = PoolSettings {
            min_size: 2,
            max_size: 10,
            ..PoolSettings::default()
        };
        assert_eq!(size_in_force(&s, None), 10);
        assert_eq!(size_in_force(&s, Some(5)), 5);
        assert_eq!(size_in_force(&s, Some(0)), 2);
        assert_eq!(size_in_force(&s, Some(50)), 10);
    }
}
