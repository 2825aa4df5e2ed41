//! tracing-subscriber set-up: text for people, JSON for log pipelines. The level filter sits
//! behind a reload handle, so `log.level` changes on SIGHUP (the format needs a restart).

use pgtide_config::{LogFormat, Logging};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Changes the running log level.
#[derive(Clone)]
pub struct LogLevel {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    /// `RUST_LOG` was set: it wins over `log.level`, also after a reload.
    pinned: bool,
}

impl LogLevel {
    /// Applies `level` (a `log.level` value or an EnvFilter directive); a bad one is logged
    /// and the running level kept.
    pub fn set(&self, level: &str) {
        let Some(handle) = &self.handle else { return };
        if self.pinned {
            tracing::info!(
                level,
                "log.level changed, but RUST_LOG is set and stays in force"
            );
            return;
        }
        match EnvFilter::try_new(level) {
            Ok(filter) => {
                if handle.reload(filter).is_ok() {
                    tracing::info!(level, "log level changed");
                }
            }
            Err(e) => tracing::warn!(level, error = %e, "log.level not applied"),
        }
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level` so a developer can
/// turn on a module's debug output without editing the config.
pub fn init(config: &Logging) -> LogLevel {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok());
    let pinned = from_env.is_some();
    let filter = from_env
        .or_else(|| EnvFilter::try_new(&config.level).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // A second init (tests calling main twice) is harmless, so the error is ignored.
    let installed = match config.format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    LogLevel {
        handle: installed.is_ok().then_some(handle),
        pinned,
    }
}
