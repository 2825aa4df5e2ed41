//! The session settings a client asks for in its startup packet (`PGDATESTYLE`, `PGTZ`,
//! `options=-c search_path=...`, `application_name`, ...).
//!
//! PostgreSQL makes them the session's defaults: `RESET` and `DISCARD ALL` return to them, and
//! a bad one refuses the login. pgtide keeps both promises:
//! - at login the settings are validated on a server, and a value the server rejects refuses
//!   the login with the server's own error; the canonical values the server reports
//!   (`EUC_JP` for `euc-jp`, `ISO, MDY` for `iso`) are what the client is told
//!   ([`crate::pool::Pool::session_params`]);
//! - in session mode, when they change anything from the pool's defaults, the client's server
//!   is one started with these settings in its own startup packet, so its defaults really are
//!   the client's; servers are matched by their settings (`ServerConn::startup`);
//! - in transaction mode they are re-applied with `SET` on each server the client lands on
//!   (`server/params.rs`); `RESET` there returns to the pool's defaults
//!   (docs/pooling-modes.md).

use pgtide_protocol::startup::StartupMessage;

/// Startup parameters that are not session settings.
const NOT_SETTINGS: &[&str] = &["user", "database", "options", "replication"];

/// A client's startup settings: names in lower case (GUC names are case-insensitive), in the
/// order PostgreSQL applies them, each name once (the last value wins, as in PostgreSQL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StartupSettings(Vec<(String, String)>);

impl StartupSettings {
    /// The settings of `startup`: its run-time parameters, then the `-c name=value` and
    /// `--name=value` switches of its `options` (which PostgreSQL applies after them).
    /// `_pq_.` protocol options are not settings.
    pub fn from_startup(startup: &StartupMessage) -> Self {
        let mut settings = StartupSettings::default();
        for (name, value) in &startup.params {
            if NOT_SETTINGS.contains(&name.as_str()) || name.starts_with("_pq_.") {
                continue;
            }
            settings.push(name, value);
        }
        if let Some(options) = startup.param("options") {
            let mut words = options.split_whitespace();
            while let Some(word) = words.next() {
                let setting = match word {
                    "-c" => words.next(),
                    w => w.strip_prefix("-c").or_else(|| w.strip_prefix("--")),
                };
                if let Some((name, value)) = setting.and_then(|s| s.split_once('=')) {
                    settings.push(&name.replace('-', "_"), value);
                }
            }
        }
        settings
    }

    fn push(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        self.0.retain(|(n, _)| *n != name);
        self.0.push((name, value.to_owned()));
    }

    /// True when the client asked for nothing (the common case: no server round trip).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The settings, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// One `set_config` per setting, as one simple query (run in one implicit transaction, so
    /// a rejected value leaves none of them applied). Names and values are literals: whatever a
    /// client sends, the server sees one name and one value, parsed as at startup.
    pub fn set_query(&self) -> String {
        let mut sql = String::new();
        for (name, value) in self.iter() {
            super::params::push_set(&mut sql, name, value);
        }
        sql
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgtide_protocol::startup::ProtocolVersion;

    fn startup(params: &[(&str, &str)]) -> StartupMessage {
        StartupMessage {
            version: ProtocolVersion { major: 3, minor: 0 },
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn parameters_then_options_in_order_last_wins() {
        let s = StartupSettings::from_startup(&startup(&[
            ("user", "app"),
            ("database", "app"),
            ("DateStyle", "Postgres, MDY"),
            ("_pq_.something", "1"),
            (
                "options",
                "-c search_path=foo -cwork_mem=64MB --statement-timeout=5s -c datestyle=iso",
            ),
        ]));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![
                ("search_path", "foo"),
                ("work_mem", "64MB"),
                ("statement_timeout", "5s"),
                ("datestyle", "iso"),
            ]
        );
        assert_eq!(
            s.set_query(),
            "SELECT pg_catalog.set_config('search_path', 'foo', false);\
             SELECT pg_catalog.set_config('work_mem', '64MB', false);\
             SELECT pg_catalog.set_config('statement_timeout', '5s', false);\
             SELECT pg_catalog.set_config('datestyle', 'iso', false);"
        );
    }

    #[test]
    fn hostile_names_and_values_stay_one_identifier_and_one_literal() {
        let s = StartupSettings::from_startup(&startup(&[("x\"; drop table t; --", "it's")]));
        assert_eq!(
            s.set_query(),
            "SELECT pg_catalog.set_config('x\"; drop table t; --', 'it''s', false);"
        );
        assert!(StartupSettings::from_startup(&startup(&[("user", "a")])).is_empty());
    }
}
