//! Session parameters: what a client believes its session has, and what a server session has.
//!
//! In transaction mode a client's consecutive transactions run on different servers. PostgreSQL
//! reports the important settings (client_encoding, DateStyle, TimeZone, IntervalStyle,
//! application_name, standard_conforming_strings, ...) with ParameterStatus whenever they
//! change; pgtide records them per client and per server, and before a client's transaction runs
//! on a server whose values differ, it sends one `SET ...; SET ...` round trip. Settings that
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

/// A small ordered name → value map (a dozen entries; a Vec beats a HashMap here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet(Vec<(String, String)>);

impl ParamSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name` (case-insensitive, as GUC names are).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, replacing any value.
    pub fn set(&mut self, name: &str, value: &str) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, v)) => {
                if v != value {
                    value.clone_into(v);
                }
            }
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// All entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Keeps only the entries `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(n, _)| keep(n));
    }

    /// The `SET` statements that bring `server` to `wanted`, as one simple query, or `None`
    /// when they already agree.
    pub fn sync_query(wanted: &ParamSet, server: &ParamSet) -> Option<String> {
        let mut sql = String::new();
        for (name, value) in wanted.iter() {
            if server.get(name) == Some(value)
                || UNSETTABLE_PARAMS
                    .iter()
                    .any(|u| u.eq_ignore_ascii_case(name))
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                continue;
            }
            sql.push_str("SET ");
            sql.push_str(name);
            sql.push_str(" = ");
            sql.push_str(&quote_literal(value));
            sql.push(';');
        }
        (!sql.is_empty()).then_some(sql)
    }
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
            "SET TimeZone = 'Europe/Paris';"
        );
        have.set("TimeZone", "Europe/Paris");
        assert_eq!(ParamSet::sync_query(&want, &have), None);
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
