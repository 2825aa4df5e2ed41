//! `pgtide check-config FILE`: every problem at once, exit 2 when invalid.

use std::path::Path;
use std::process::ExitCode;

use pgtide_config::{AuthFile, ConfigError, Loader, TokensFile};

use crate::cli::apply_sets;

/// Exit code for an invalid configuration (1 is left for runtime failures).
pub const EXIT_INVALID: u8 = 2;

/// Checks the config and the auth and token files it names; prints a summary or the problems.
pub fn run(file: &Path, sets: &[String], no_env: bool) -> ExitCode {
    let mut loader = Loader::new().file(file);
    if no_env {
        loader = loader.without_env();
    }
    let loader = match apply_sets(loader, sets) {
        Ok(l) => l,
        Err(e) => return fail(&e.to_string()),
    };
    let config = match loader.load() {
        Ok(c) => c,
        Err(e @ ConfigError::Invalid(_)) => return fail(&format!("{}: {e}", file.display())),
        // Unreadable and syntax errors already name the file.
        Err(e) => return fail(&e.to_string()),
    };
    let mut errors: Vec<ConfigError> = Vec::new();
    if let Some(auth) = &config.pgtide.auth_file {
        if let Err(e) = AuthFile::load(auth) {
            errors.push(e);
        }
    }
    if let Some(tokens) = &config.admin.tokens_file {
        if let Err(e) = TokensFile::load(tokens) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return fail(&text.join("\n"));
    }
    println!(
        "{}: OK ({} database(s), listening on {})",
        file.display(),
        config.databases.len(),
        config
            .pgtide
            .listen
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::SUCCESS
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(EXIT_INVALID)
}
