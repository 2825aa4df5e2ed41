//! Message type bytes, in one place.
//!
//! Frontend and backend tags overlap (`b'D'` is Describe from a client but DataRow from a
//! server, `b'S'` is Sync or ParameterStatus), so the two directions live in separate modules and
//! a tag is only meaningful together with the direction it was read from.

/// Types of messages a client (frontend) sends.
pub mod frontend {
    /// Bind a prepared statement to a portal.
    pub const BIND: u8 = b'B';
    /// Close a prepared statement or portal.
    pub const CLOSE: u8 = b'C';
    /// COPY data from the client.
    pub const COPY_DATA: u8 = b'd';
    /// End of COPY data from the client.
    pub const COPY_DONE: u8 = b'c';
    /// The client aborts a COPY FROM STDIN.
    pub const COPY_FAIL: u8 = b'f';
    /// Describe a prepared statement or portal.
    pub const DESCRIBE: u8 = b'D';
    /// Execute a portal.
    pub const EXECUTE: u8 = b'E';
    /// Ask the server to flush its output.
    pub const FLUSH: u8 = b'H';
    /// Legacy fast-path function call.
    pub const FUNCTION_CALL: u8 = b'F';
    /// Create a prepared statement.
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse all share this tag;
    /// which one it is depends on the authentication request that preceded it.
    pub const PASSWORD: u8 = b'p';
    /// Simple query.
    pub const QUERY: u8 = b'Q';
    /// End of an extended-protocol batch.
    pub const SYNC: u8 = b'S';
    /// Orderly disconnect.
    pub const TERMINATE: u8 = b'X';
}

/// Types of messages a server (backend) sends.
pub mod backend {
    /// Authentication request or result; the first body word says which.
    pub const AUTHENTICATION: u8 = b'R';
    /// Process id and secret key for cancel requests.
    pub const BACKEND_KEY_DATA: u8 = b'K';
    /// Bind succeeded.
    pub const BIND_COMPLETE: u8 = b'2';
    /// Close succeeded.
    pub const CLOSE_COMPLETE: u8 = b'3';
    /// A command finished; carries its tag, e.g. `INSERT 0 1`.
    pub const COMMAND_COMPLETE: u8 = b'C';
    /// Server enters COPY IN/OUT (replication).
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
    /// COPY data from the server.
    pub const COPY_DATA: u8 = b'd';
    /// End of COPY data from the server.
    pub const COPY_DONE: u8 = b'c';
    /// Server enters COPY FROM STDIN.
    pub const COPY_IN_RESPONSE: u8 = b'G';
    /// Server enters COPY TO STDOUT.
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    /// A result row.
    pub const DATA_ROW: u8 = b'D';
    /// The query string was empty.
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    /// An error; the server then waits for Sync (extended protocol) or ends the query.
    pub const ERROR_RESPONSE: u8 = b'E';
    /// Result of a legacy function call.
    pub const FUNCTION_CALL_RESPONSE: u8 = b'V';
    /// The server does not support the requested minor version or `_pq_.` options.
    pub const NEGOTIATE_PROTOCOL_VERSION: u8 = b'v';
    /// Describe found no result rows.
    pub const NO_DATA: u8 = b'n';
    /// A warning or informational message.
    pub const NOTICE_RESPONSE: u8 = b'N';
    /// LISTEN/NOTIFY notification.
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    /// Parameter types of a described statement.
    pub const PARAMETER_DESCRIPTION: u8 = b't';
    /// A reported run-time parameter changed (client_encoding, TimeZone, ...).
    pub const PARAMETER_STATUS: u8 = b'S';
    /// Parse succeeded.
    pub const PARSE_COMPLETE: u8 = b'1';
    /// Execute stopped at its row limit.
    pub const PORTAL_SUSPENDED: u8 = b's';
    /// The server is ready for a new query; carries the transaction status.
    pub const READY_FOR_QUERY: u8 = b'Z';
    /// Column descriptions of a result.
    pub const ROW_DESCRIPTION: u8 = b'T';
}
