//! SQLSTATE codes as data.
//!
//! The pooler both sends errors (and must pick the code clients and drivers react to, e.g.
//! `57P01` makes drivers reconnect) and reads them from servers (e.g. `53300` drives the adaptive
//! sizing back-off). Named constants keep those codes out of string literals scattered around.

use std::fmt;

/// A five-character SQLSTATE code.
///
/// Stored inline (`[u8; 5]`, `Copy`) so codes parsed from a server's ErrorResponse compare with
/// the constants without allocation.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SqlState([u8; 5]);

impl SqlState {
    /// Builds a code at compile time; panics (at compile time for constants) unless it is five
    /// ASCII digits or upper-case letters.
    pub const fn new(code: &[u8; 5]) -> SqlState {
        let mut i = 0;
        while i < 5 {
            assert!(
                code[i].is_ascii_digit() || code[i].is_ascii_uppercase(),
                "SQLSTATE must be 5 ASCII digits or upper-case letters"
            );
            i += 1;
        }
        SqlState(*code)
    }

    /// Parses a code received on the wire; `None` unless it has the SQLSTATE shape.
    pub fn from_code(code: &str) -> Option<SqlState> {
        let bytes: [u8; 5] = code.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            .then_some(SqlState(bytes))
    }

    /// The code as text, e.g. `"08P01"`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("SqlState is ASCII by construction")
    }

    /// The two-character class (e.g. `"08"` connection exception), which is what generic error
    /// handling should match on.
    pub fn class(&self) -> &str {
        &self.as_str()[..2]
    }

    /// The raw bytes, as written on the wire.
    pub const fn as_bytes(&self) -> &[u8; 5] {
        &self.0
    }

    /// `00000`
    pub const SUCCESSFUL_COMPLETION: SqlState = SqlState::new(b"00000");
    /// `08000`
    pub const CONNECTION_EXCEPTION: SqlState = SqlState::new(b"08000");
    /// `08001`: the pooler could not open a server connection.
    pub const SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION: SqlState = SqlState::new(b"08001");
    /// `08006`
    pub const CONNECTION_FAILURE: SqlState = SqlState::new(b"08006");
    /// `08P01`: malformed or unexpected messages.
    pub const PROTOCOL_VIOLATION: SqlState = SqlState::new(b"08P01");
    /// `0A000`
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState::new(b"0A000");
    /// `22023`
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState::new(b"22023");
    /// `25P03`
    pub const IDLE_IN_TRANSACTION_SESSION_TIMEOUT: SqlState = SqlState::new(b"25P03");
    /// `26000`: Bind/Describe/Close of an unknown prepared statement.
    pub const INVALID_SQL_STATEMENT_NAME: SqlState = SqlState::new(b"26000");
    /// `28000`: unknown user, auth method not allowed.
    pub const INVALID_AUTHORIZATION_SPECIFICATION: SqlState = SqlState::new(b"28000");
    /// `28P01`: wrong password.
    pub const INVALID_PASSWORD: SqlState = SqlState::new(b"28P01");
    /// `3D000`: unknown database.
    pub const INVALID_CATALOG_NAME: SqlState = SqlState::new(b"3D000");
    /// `42P05`: Parse of a name that already exists.
    pub const DUPLICATE_PREPARED_STATEMENT: SqlState = SqlState::new(b"42P05");
    /// `53300`: server or pooler connection limit reached.
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState::new(b"53300");
    /// `54000`
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState::new(b"54000");
    /// `55P02`: a setting that only a new session can take (`SET` after connection start).
    pub const CANT_CHANGE_RUNTIME_PARAM: SqlState = SqlState::new(b"55P02");
    /// `57014`: statement cancelled (cancel request or timeout).
    pub const QUERY_CANCELED: SqlState = SqlState::new(b"57014");
    /// `57P01`
    pub const ADMIN_SHUTDOWN: SqlState = SqlState::new(b"57P01");
    /// `57P02`
    pub const CRASH_SHUTDOWN: SqlState = SqlState::new(b"57P02");
    /// `57P03`: the server is starting up, shutting down or in recovery.
    pub const CANNOT_CONNECT_NOW: SqlState = SqlState::new(b"57P03");
    /// `57P05`
    pub const IDLE_SESSION_TIMEOUT: SqlState = SqlState::new(b"57P05");
    /// `XX000`
    pub const INTERNAL_ERROR: SqlState = SqlState::new(b"XX000");
}

impl fmt::Display for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SqlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SqlState({})", self.as_str())
    }
}

impl PartialEq<str> for SqlState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SqlState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_render() {
        assert_eq!(SqlState::PROTOCOL_VIOLATION.as_str(), "08P01");
        assert_eq!(SqlState::TOO_MANY_CONNECTIONS.to_string(), "53300");
        assert_eq!(SqlState::CANNOT_CONNECT_NOW.class(), "57");
        assert_eq!(SqlState::INTERNAL_ERROR, "XX000");
    }

    #[test]
    fn parse_from_wire() {
        assert_eq!(
            SqlState::from_code("53300"),
            Some(SqlState::TOO_MANY_CONNECTIONS)
        );
        assert_eq!(SqlState::from_code("5330"), None);
        assert_eq!(SqlState::from_code("533000"), None);
        assert_eq!(SqlState::from_code("08p01"), None);
        assert_eq!(SqlState::from_code("0é00"), None);
    }
}
