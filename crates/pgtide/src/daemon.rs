//! `pgtide [--config FILE]`: the daemon. SIGHUP reloads the config live; SIGTERM/SIGINT stop
//! accepting, let transactions finish, and exit.

use std::process::ExitCode;
use std::time::Duration;

use pgtide_config::{diff, Apply, Config};
use pgtide_pool_core::{Proxy, ProxyHandle};
use tokio::signal::unix::{signal, SignalKind};

use crate::check_config::EXIT_INVALID;
use crate::cli::ConfigArgs;
use crate::logging;

/// How long shutdown waits for clients inside a transaction to finish it.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Loads the config and runs the pooler until a shutdown signal.
pub fn run(args: &ConfigArgs) -> ExitCode {
    let config = match args.load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgtide: {e}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    logging::init(&config.log);
    let runtime = match pgtide_pool_core::runtime::build(config.pgtide.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgtide: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, Some(args.clone())))
}

/// Binds and serves `config`; with `reload_from`, SIGHUP reloads from those flags.
pub async fn serve(config: Config, reload_from: Option<ConfigArgs>) -> ExitCode {
    let proxy = match Proxy::bind(config.clone()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("pgtide: {e}");
            return ExitCode::FAILURE;
        }
    };
    let addrs: Vec<String> = proxy
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(listen = %addrs.join(", "), databases = config.databases.len(), version = env!("CARGO_PKG_VERSION"), "pgtide ready");
    if let Some(args) = reload_from {
        tokio::spawn(reload_on_sighup(proxy.handle(), args, config));
    }
    proxy.serve(shutdown_signal(), DRAIN_TIMEOUT).await;
    tracing::info!("pgtide stopped");
    ExitCode::SUCCESS
}

async fn reload_on_sighup(handle: ProxyHandle, args: ConfigArgs, mut current: Config) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install SIGHUP handler; reload disabled");
        return;
    };
    while hup.recv().await.is_some() {
        let new = match args.load() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload rejected: the running config is unchanged");
                continue;
            }
        };
        let changes = diff(&current, &new);
        if let Err(e) = handle.reload(new.clone()) {
            tracing::error!(error = %e, "reload rejected: the running config is unchanged");
            continue;
        }
        for c in &changes {
            match c.apply {
                Apply::Live => tracing::info!(key = %c.path, "reload: applied"),
                Apply::Restart => {
                    tracing::warn!(key = %c.path, "reload: needs a restart to take effect")
                }
            }
        }
        tracing::info!(changes = changes.len(), "config reloaded");
        current = new;
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
