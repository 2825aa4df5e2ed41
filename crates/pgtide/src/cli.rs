//! The command line. Flags are the top configuration layer, above `PGTIDE_*` variables.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use pgtide_config::{Config, ConfigError, Loader};

/// pgtide: a PostgreSQL connection pooler whose pool sizes tune themselves.
#[derive(Debug, Parser)]
#[command(name = "pgtide", version, about, long_about = None)]
pub struct Cli {
    /// What to do; with none, run the daemon with `--config`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration flags for running the daemon.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pooler (the default).
    Run,
    /// Load and validate a config file; print every problem, exit 2 when it is invalid.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
        /// Overrides, as for the daemon (`--set pool.max_size=40`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Ignore `PGTIDE_*` environment variables.
        #[arg(long)]
        no_env: bool,
    },
    /// Start a throwaway local PostgreSQL and pgtide in front of it, until Ctrl-C.
    Demo {
        /// Where clients connect.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: String,
    },
}

/// The flags that feed the configuration layers.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// TOML config file.
    #[arg(short, long, env = "PGTIDE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address to accept clients on (repeatable); overrides `pgtide.listen`.
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Vec<String>,
    /// Overrides `log.level` (a tracing filter such as `info` or `pgtide_pool_core=debug`).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Overrides `log.format`: `text` or `json`.
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// Any config key, e.g. `--set pool.max_size=40` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", global = true)]
    pub set: Vec<String>,
}

/// A `--set` argument without `=`.
#[derive(Debug, thiserror::Error)]
#[error("--set {0:?}: expected KEY=VALUE, e.g. --set pool.max_size=40")]
pub struct BadSet(pub String);

/// Why the daemon's configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A malformed `--set`.
    #[error(transparent)]
    BadSet(#[from] BadSet),
    /// The layers do not make a valid config.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Applies `--set KEY=VALUE` pairs to a loader.
pub fn apply_sets(mut loader: Loader, sets: &[String]) -> Result<Loader, BadSet> {
    for s in sets {
        let (key, value) = s.split_once('=').ok_or_else(|| BadSet(s.clone()))?;
        loader = loader.set_str(key.trim(), value.trim());
    }
    Ok(loader)
}

impl ConfigArgs {
    /// Loads and validates the config these flags describe (at start-up and on every SIGHUP).
    pub fn load(&self) -> Result<Config, LoadError> {
        Ok(self.loader()?.load()?)
    }

    /// The loader for these flags: file, environment, then the flags themselves.
    pub fn loader(&self) -> Result<Loader, BadSet> {
        let mut loader = Loader::new();
        if let Some(file) = &self.config {
            loader = loader.file(file);
        }
        if !self.listen.is_empty() {
            let list: Vec<String> = self.listen.clone();
            loader = loader.set("pgtide.listen", list);
        }
        if let Some(level) = &self.log_level {
            loader = loader.set("log.level", level.clone());
        }
        if let Some(format) = &self.log_format {
            loader = loader.set("log.format", format.clone());
        }
        apply_sets(loader, &self.set)
    }
}
