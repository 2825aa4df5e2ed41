//! Runtime overrides kept across restarts (`admin.state_file`): a TOML file of
//! `[pools."database/user"]` tables, written atomically (a temporary file in the same
//! directory, flushed to disk, then renamed over the old one) so that a crash mid-write leaves
//! the previous file whole, and read back at start-up.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use pgtide_config::PoolOverrides;
use serde::{Deserialize, Serialize};

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading, writing or renaming failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid state file.
    #[error("state file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The file's contents: overrides by pool name (`database/user`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Overrides by pool.
    #[serde(default)]
    pub pools: BTreeMap<String, PoolOverrides>,
}

/// Reads `path`; an absent file is an empty state.
pub fn load(path: &Path) -> Result<State, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
        Err(source) => {
            return Err(StateFileError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|e| StateFileError::Invalid {
        path: path.to_owned(),
        reason: e.message().to_owned(),
    })
}

/// Writes `state` to `path` atomically.
pub fn save(path: &Path, state: &State) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_owned(),
        source,
    };
    let text = toml::to_string(state).map_err(|e| StateFileError::Invalid {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(b"# pgtide runtime overrides; written by pgtide, read at start-up.\n")
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_a_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("pgtide-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.toml");
        assert_eq!(load(&path).unwrap(), State::default());
        let mut o = PoolOverrides::new();
        o.set("max_size", toml::Value::Integer(7), &Default::default())
            .unwrap();
        let mut state = State::default();
        state.pools.insert("app/app".into(), o);
        save(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left");
        std::fs::write(&path, "pools = 3").unwrap();
        assert!(matches!(load(&path), Err(StateFileError::Invalid { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
