//! Session parameters: what a client believes its session has, and what a server session has.
//!
//! In transaction mode a client's consecutive transactions run on different servers. PostgreSQL
//! reports the important settings (client_encoding, DateStyle, TimeZone, IntervalStyle,
//! application_name, standard_conforming_strings, ...) with ParameterStatus whenever they
//! change; pgtide records them per client and per server, and before a client's transaction runs
//! on a server whose values differ, it sends one round trip of `set_config` calls. Settings that
//! PostgreSQL does not report (search_path, work_mem, ...) changed with `SET` are *not* carried
//! between servers — use `SET LOCAL` inside a transaction, or session mode (docs/pooling-modes.md).

/// Reported parameters that cannot be `SET` (they describe the server, not the session).
pub const UNSETTABLE_PARAMS: &[&str] = &[
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "in_hot_standby",
    "default_transaction_read_only",
    "scram_iterations",
];

/// Entries of a [`ParamSet`].
pub type Entries = Vec<(String, String)>;

/// A small ordered name → value map (a dozen entries; a Vec beats a HashMap here).
///
/// A client's set starts as the pool's welcome parameters, shared behind an `Arc` (`base`), with
/// only the client's own differences stored in `own`: an idle client then costs a few bytes
/// instead of two dozen small strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet {
    base: Option<std::sync::Arc<Entries>>,
    own: Entries,
}

impl ParamSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set that reads through to a shared `base` until entries are overridden.
    pub fn over(base: std::sync::Arc<Entries>) -> Self {
        Self {
            base: Some(base),
            own: Vec::new(),
        }
    }

    /// The entries as a shareable base for [`ParamSet::over`].
    pub fn to_shared(&self) -> std::sync::Arc<Entries> {
        std::sync::Arc::new(
            self.iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// The value of `name` (case-insensitive, as GUC names are).
    pub fn get(&self, name: &str) -> Option<&str> {
        find(&self.own, name).or_else(|| self.base.as_deref().and_then(|b| find(b, name)))
    }

    /// Sets `name`, replacing any value.
    pub fn set(&mut self, name: &str, value: &str) {
        if let Some((_, v)) = self
            .own
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if v != value {
                value.clone_into(v);
            }
            return;
        }
        if self.base.as_deref().and_then(|b| find(b, name)) == Some(value) {
            return;
        }
        // Exact growth: a client usually overrides one or two settings, and this set lives as
        // long as the client (amortized doubling would reserve four entries for one).
        self.own.reserve_exact(1);
        self.own.push((name.to_owned(), value.to_owned()));
    }

    /// All entries: the overrides, then the base entries not overridden.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let own = &self.own;
        let base = self
            .base
            .as_deref()
            .into_iter()
            .flatten()
            .filter(move |(n, _)| find(own, n).is_none());
        own.iter()
            .chain(base)
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The entries whose names the shared base has, with this set's values, in the base's
    /// order and spelling: for a client over the welcome set, exactly the settings PostgreSQL
    /// reports at login, not the unreported ones (search_path, work_mem) it also carries.
    pub fn reported(&self) -> impl Iterator<Item = (&str, &str)> {
        self.base
            .as_deref()
            .into_iter()
            .flatten()
            .map(move |(n, v)| {
                let value = find(&self.own, n).unwrap_or(v);
                (n.as_str(), value)
            })
    }

    /// True when this set has values of its own over its base (a client whose settings differ
    /// from the pool's welcome set).
    pub fn has_overrides(&self) -> bool {
        !self.own.is_empty()
    }

    /// Keeps only the entries `keep` accepts (materializes a shared base first).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        if self.base.is_some() {
            self.own = self
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect();
            self.base = None;
        }
        self.own.retain(|(n, _)| keep(n));
    }

    /// The statements that bring `server` to `wanted`, as one simple query, or `None` when
    /// they already agree. Inline: the per-transaction answer is almost always "they agree"
    /// (same shared base, same overrides), a few compares that should not cost a call.
    #[inline]
    pub fn sync_query(wanted: &ParamSet, server: &ParamSet) -> Option<String> {
        if wanted.shares_base_with(server) && wanted.own == server.own {
            return None;
        }
        Self::sync_query_slow(wanted, server)
    }

    fn sync_query_slow(wanted: &ParamSet, server: &ParamSet) -> Option<String> {
        if wanted.shares_base_with(server) {
            // The hot path: client and server read through to the same welcome set, so only
            // their own overrides (one or two, often none) can differ.
            return Self::sync_overrides(wanted, server);
        }
        let mut sql = String::new();
        for (name, value) in wanted.iter() {
            if server.get(name) == Some(value) || !settable(name) {
                continue;
            }
            push_set(&mut sql, name, value);
        }
        for (name, _) in server.iter() {
            if wanted.get(name).is_none() && settable(name) {
                push_reset(&mut sql, name);
            }
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// Forgets `name` where this set overrides its base (a setting the server was RESET to
    /// its default for); base entries stay.
    pub fn forget_own(&mut self, name: &str) {
        self.own.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl ParamSet {
    /// [`ParamSet::sync_query`] for two sets over the same base.
    fn sync_overrides(wanted: &ParamSet, server: &ParamSet) -> Option<String> {
        if wanted.own == server.own {
            // The usual case once a client's settings were applied to this server (or the
            // client changed none): a few byte compares instead of a lookup per name.
            return None;
        }
        let names = wanted.own.iter().map(|(n, _)| n.as_str()).chain(
            server
                .own
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| find(&wanted.own, n).is_none()),
        );
        let mut sql = String::new();
        for name in names {
            if !settable(name) {
                continue;
            }
            match wanted.get(name) {
                // Another client's setting the server does not report (search_path from a
                // startup packet): back to the server's default, or it would leak.
                None => push_reset(&mut sql, name),
                Some(value) if server.get(name) != Some(value) => push_set(&mut sql, name, value),
                Some(_) => {}
            }
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// True when both sets read through to the same shared base.
    pub fn shares_base_with(&self, other: &ParamSet) -> bool {
        matches!((&self.base, &other.base), (Some(a), Some(b)) if std::sync::Arc::ptr_eq(a, b))
    }
}

fn settable(name: &str) -> bool {
    !UNSETTABLE_PARAMS
        .iter()
        .any(|u| u.eq_ignore_ascii_case(name))
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Appends a `RESET` of `name` (a name [`settable`] accepts).
fn push_reset(sql: &mut String, name: &str) {
    sql.push_str("RESET ");
    sql.push_str(name);
    sql.push(';');
}

/// Appends one `set_config(name, value, false)`: the value is taken as a startup packet or
/// postgresql.conf gives it, so a list such as `search_path = 'foo,public'` stays a list
/// (`SET search_path = 'foo,public'` would make it one quoted name).
pub(crate) fn push_set(sql: &mut String, name: &str, value: &str) {
    sql.push_str("SELECT pg_catalog.set_config(");
    sql.push_str(&quote_literal(name));
    sql.push_str(", ");
    sql.push_str(&quote_literal(value));
    sql.push_str(", false);");
}

fn find<'a>(entries: &'a Entries, name: &str) -> Option<&'a str> {
    entries
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A SQL string literal: single quotes doubled, and the E'' form when backslashes are present
/// so the result does not depend on standard_conforming_strings.
pub fn quote_literal(value: &str) -> String {
    let escaped = value.replace('\'', "''");
    if escaped.contains('\\') {
        format!("E'{}'", escaped.replace('\\', "\\\\"))
    } else {
        format!("'{escaped}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_sets_only_differences() {
        let mut want = ParamSet::new();
        want.set("TimeZone", "Europe/Paris");
        want.set("client_encoding", "UTF8");
        want.set("server_version", "15.1");
        let mut have = ParamSet::new();
        have.set("timezone", "UTC");
        have.set("client_encoding", "UTF8");
        assert_eq!(
            ParamSet::sync_query(&want, &have).unwrap(),
            "SELECT pg_catalog.set_config('TimeZone', 'Europe/Paris', false);"
        );
        have.set("TimeZone", "Europe/Paris");
        assert_eq!(ParamSet::sync_query(&want, &have), None);
    }

    #[test]
    fn over_a_shared_base_only_overrides_are_compared() {
        let mut welcome = ParamSet::new();
        welcome.set("TimeZone", "UTC");
        welcome.set("application_name", "");
        let base = welcome.to_shared();
        let mut client = ParamSet::over(base.clone());
        let mut server = ParamSet::over(base);
        assert!(client.shares_base_with(&server));
        assert_eq!(ParamSet::sync_query(&client, &server), None);
        client.set("application_name", "pgbench");
        assert_eq!(
            ParamSet::sync_query(&client, &server).unwrap(),
            "SELECT pg_catalog.set_config('application_name', 'pgbench', false);"
        );
        server.set("application_name", "pgbench");
        assert_eq!(ParamSet::sync_query(&client, &server), None);
        // A server left with another client's setting is brought back to the base value.
        server.set("TimeZone", "Asia/Tokyo");
        assert_eq!(
            ParamSet::sync_query(&client, &server).unwrap(),
            "SELECT pg_catalog.set_config('TimeZone', 'UTC', false);"
        );
    }

    #[test]
    fn a_shared_base_reads_through_until_overridden() {
        let mut welcome = ParamSet::new();
        welcome.set("TimeZone", "UTC");
        welcome.set("DateStyle", "ISO, MDY");
        let base = welcome.to_shared();
        let mut client = ParamSet::over(base.clone());
        assert_eq!(client.get("timezone"), Some("UTC"));
        client.set("TimeZone", "UTC"); // same as the base: nothing stored
        assert!(client.own.is_empty());
        client.set("TimeZone", "Europe/Paris");
        assert_eq!(client.get("TimeZone"), Some("Europe/Paris"));
        assert_eq!(client.iter().count(), 2);
        assert_eq!(base[0].1, "UTC", "the shared base is never written");
        client.retain(|n| n == "DateStyle");
        assert_eq!(
            client.iter().collect::<Vec<_>>(),
            vec![("DateStyle", "ISO, MDY")]
        );
    }

    #[test]
    fn another_clients_unreported_setting_is_reset() {
        let mut welcome = ParamSet::new();
        welcome.set("TimeZone", "UTC");
        let base = welcome.to_shared();
        let client = ParamSet::over(base.clone());
        let mut server = ParamSet::over(base);
        server.set("search_path", "foo,public");
        assert_eq!(
            ParamSet::sync_query(&client, &server).unwrap(),
            "RESET search_path;"
        );
        server.forget_own("SEARCH_PATH");
        assert_eq!(ParamSet::sync_query(&client, &server), None);
        let mut unshared = ParamSet::new();
        unshared.set("TimeZone", "UTC");
        unshared.set("work_mem", "64MB");
        assert_eq!(
            ParamSet::sync_query(&client, &unshared).unwrap(),
            "RESET work_mem;"
        );
    }

    #[test]
    fn only_the_base_names_are_reported_with_the_client_values() {
        let mut welcome = ParamSet::new();
        welcome.set("DateStyle", "ISO, MDY");
        welcome.set("TimeZone", "UTC");
        let mut client = ParamSet::over(welcome.to_shared());
        client.set("search_path", "foo");
        client.set("datestyle", "Postgres, MDY");
        assert_eq!(
            client.reported().collect::<Vec<_>>(),
            vec![("DateStyle", "Postgres, MDY"), ("TimeZone", "UTC")]
        );
        assert_eq!(ParamSet::new().reported().count(), 0);
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        let mut want = ParamSet::new();
        want.set("bad name; DROP", "x");
        assert_eq!(ParamSet::sync_query(&want, &ParamSet::new()), None);
    }
}
