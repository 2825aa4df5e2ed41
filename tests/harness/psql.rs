//! Running psql as a client, and quoting SQL for the statements the harness builds.
//!
//! psql runs as the current user, even root: only the server refuses root. Output flags are
//! fixed so results are easy to compare: `-X` (no psqlrc), `-A -t` (unaligned, tuples only),
//! `-q` (no command tags), `ON_ERROR_STOP=1` (a failing statement fails the call).

use std::process::Command;

use crate::error::Result;
use crate::pgbin::{pg_command, run};

/// A psql command with the harness's output flags and nothing else.
pub(crate) fn psql_command() -> Command {
    let mut cmd = pg_command("psql");
    cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]);
    cmd
}

/// Runs `sql` with psql against `conninfo` (a `key=value` string or URL, e.g. from
/// [`crate::Cluster::conn_string`] plus ` sslmode=require`) and returns trimmed stdout.
/// Several statements in one string run in one implicit transaction.
pub fn psql(conninfo: &str, sql: &str) -> Result<String> {
    let mut cmd = psql_command();
    cmd.arg("-d").arg(conninfo).arg("-c").arg(sql);
    Ok(run(&mut cmd)?.trim().to_owned())
}

/// A SQL string literal: `it's` → `'it''s'`.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A SQL identifier, always quoted so case and odd characters survive: `App` → `"App"`.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
    }
}
