//! The pgtide daemon.
//!
//! # Layout
//! - `admin` — the admin API's listener, tokens and metrics recorder in the daemon.
//! - `cli` — flags and subcommands (clap); flags are the top config layer.
//! - `logging` — tracing-subscriber set-up.
//! - `check_config` — `pgtide check-config FILE`.
//! - `daemon` — loads the config and runs the pooler until SIGTERM/SIGINT.
//! - `demo` — `pgtide demo`: a throwaway PostgreSQL with pgtide in front.
#![forbid(unsafe_code)]

mod admin;
mod check_config;
mod cli;
mod daemon;
mod demo;
mod logging;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::CheckConfig { file, set, no_env }) => check_config::run(file, set, *no_env),
        Some(Command::Demo { listen }) => demo::run(listen, &cli.config),
        Some(Command::Run) | None => daemon::run(&cli.config),
    }
}
