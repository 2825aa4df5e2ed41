//! The fields of an ErrorResponse or NoticeResponse.
//!
//! The pooler reads server errors to classify failures (53300 → back off, 57P01 → server
//! shutting down, 28P01 → server auth failed) and to log them; it does not rebuild them for
//! forwarding (the original frame is forwarded). Fields are owned: errors are rare, and failure
//! events outlive the read buffer.

use std::fmt;

use crate::error::ProtocolError;
use crate::read::Reader;
use crate::sqlstate::SqlState;

/// Severity of an error or notice, as written in the non-localized `V` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The current command failed; the session continues.
    Error,
    /// The session ends after this message.
    Fatal,
    /// The server restarts; every session ends.
    Panic,
    /// Notice: something the client should know about.
    Warning,
    /// Notice: informational.
    Notice,
    /// Notice: debugging output.
    Debug,
    /// Notice: explicitly requested information (e.g. VACUUM VERBOSE).
    Info,
    /// Notice: server log output sent to the client.
    Log,
}

impl Severity {
    /// The wire spelling, e.g. `"FATAL"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Panic => "PANIC",
            Severity::Warning => "WARNING",
            Severity::Notice => "NOTICE",
            Severity::Debug => "DEBUG",
            Severity::Info => "INFO",
            Severity::Log => "LOG",
        }
    }

    /// Parses the non-localized spelling.
    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "ERROR" => Severity::Error,
            "FATAL" => Severity::Fatal,
            "PANIC" => Severity::Panic,
            "WARNING" => Severity::Warning,
            "NOTICE" => Severity::Notice,
            "DEBUG" => Severity::Debug,
            "INFO" => Severity::Info,
            "LOG" => Severity::Log,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Field type bytes of ErrorResponse / NoticeResponse.
pub mod field {
    /// Severity, possibly localized.
    pub const SEVERITY: u8 = b'S';
    /// Severity, never localized (PostgreSQL 9.6+).
    pub const SEVERITY_NONLOCALIZED: u8 = b'V';
    /// SQLSTATE code.
    pub const CODE: u8 = b'C';
    /// Primary message.
    pub const MESSAGE: u8 = b'M';
    /// Detail.
    pub const DETAIL: u8 = b'D';
    /// Hint.
    pub const HINT: u8 = b'H';
    /// Cursor position in the query string.
    pub const POSITION: u8 = b'P';
    /// Position in an internally generated query.
    pub const INTERNAL_POSITION: u8 = b'p';
    /// Internally generated query.
    pub const INTERNAL_QUERY: u8 = b'q';
    /// Context (call stack).
    pub const WHERE: u8 = b'W';
    /// Schema name.
    pub const SCHEMA: u8 = b's';
    /// Table name.
    pub const TABLE: u8 = b't';
    /// Column name.
    pub const COLUMN: u8 = b'c';
    /// Data type name.
    pub const DATA_TYPE: u8 = b'd';
    /// Constraint name.
    pub const CONSTRAINT: u8 = b'n';
    /// Source file.
    pub const FILE: u8 = b'F';
    /// Source line.
    pub const LINE: u8 = b'L';
    /// Source routine.
    pub const ROUTINE: u8 = b'R';
}

/// Decoded ErrorResponse / NoticeResponse. Every field is optional (a server must send
/// severity, code and message, but a hostile one may not); unknown field types are ignored, as
/// the protocol requires. Text that is not valid UTF-8 (a server using another client encoding)
/// is converted lossily rather than rejected, since these are read for logging and
/// classification only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// `S`: severity, possibly localized.
    pub severity: Option<String>,
    /// `V`: severity, not localized; prefer it via [`ErrorFields::severity_level`].
    pub severity_nonlocalized: Option<String>,
    /// `C`: the SQLSTATE; `None` when absent or not shaped like one.
    pub code: Option<SqlState>,
    /// `M`: primary message.
    pub message: Option<String>,
    /// `D`
    pub detail: Option<String>,
    /// `H`
    pub hint: Option<String>,
    /// `P`: 1-based character position in the query.
    pub position: Option<String>,
    /// `p`
    pub internal_position: Option<String>,
    /// `q`
    pub internal_query: Option<String>,
    /// `W`
    pub where_: Option<String>,
    /// `s`
    pub schema: Option<String>,
    /// `t`
    pub table: Option<String>,
    /// `c`
    pub column: Option<String>,
    /// `d`
    pub data_type: Option<String>,
    /// `n`
    pub constraint: Option<String>,
    /// `F`
    pub file: Option<String>,
    /// `L`
    pub line: Option<String>,
    /// `R`
    pub routine: Option<String>,
}

impl ErrorFields {
    /// Decodes the body of an ErrorResponse or NoticeResponse: (type byte, string) pairs ended by
    /// a zero byte.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] when a string or the final terminator is missing.
    pub fn parse(body: &[u8]) -> Result<ErrorFields, ProtocolError> {
        let mut r = Reader::new(body, "ErrorResponse");
        let mut f = ErrorFields::default();
        loop {
            let kind = r.u8()?;
            if kind == 0 {
                r.finish()?;
                return Ok(f);
            }
            let value = r.cstr_bytes()?;
            let text = || String::from_utf8_lossy(value).into_owned();
            let slot = match kind {
                field::SEVERITY => &mut f.severity,
                field::SEVERITY_NONLOCALIZED => &mut f.severity_nonlocalized,
                field::CODE => {
                    f.code = std::str::from_utf8(value)
                        .ok()
                        .and_then(SqlState::from_code);
                    continue;
                }
                field::MESSAGE => &mut f.message,
                field::DETAIL => &mut f.detail,
                field::HINT => &mut f.hint,
                field::POSITION => &mut f.position,
                field::INTERNAL_POSITION => &mut f.internal_position,
                field::INTERNAL_QUERY => &mut f.internal_query,
                field::WHERE => &mut f.where_,
                field::SCHEMA => &mut f.schema,
                field::TABLE => &mut f.table,
                field::COLUMN => &mut f.column,
                field::DATA_TYPE => &mut f.data_type,
                field::CONSTRAINT => &mut f.constraint,
                field::FILE => &mut f.file,
                field::LINE => &mut f.line,
                field::ROUTINE => &mut f.routine,
                _ => continue,
            };
            *slot = Some(text());
        }
    }

    /// The severity, from the non-localized field when present (so it parses whatever
    /// `lc_messages` the server runs with), else from the possibly localized one.
    pub fn severity_level(&self) -> Option<Severity> {
        self.severity_nonlocalized
            .as_deref()
            .and_then(Severity::parse)
            .or_else(|| self.severity.as_deref().and_then(Severity::parse))
    }
}

impl fmt::Display for ErrorFields {
    /// `SEVERITY: message (SQLSTATE code)`, the shape of a PostgreSQL log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = self
            .severity_nonlocalized
            .as_deref()
            .or(self.severity.as_deref())
            .unwrap_or("ERROR");
        write!(f, "{severity}: {}", self.message.as_deref().unwrap_or(""))?;
        if let Some(code) = self.code {
            write!(f, " (SQLSTATE {code})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_server_error() {
        let body = b"SFATAL\0VFATAL\0C53300\0Msorry, too many clients already\0\
                     Fpostinit.c\0L1012\0RInitPostgres\0\0";
        let f = ErrorFields::parse(body).unwrap();
        assert_eq!(f.code, Some(SqlState::TOO_MANY_CONNECTIONS));
        assert_eq!(f.severity_level(), Some(Severity::Fatal));
        assert_eq!(
            f.message.as_deref(),
            Some("sorry, too many clients already")
        );
        assert_eq!(f.line.as_deref(), Some("1012"));
        assert_eq!(f.detail, None);
        assert_eq!(
            f.to_string(),
            "FATAL: sorry, too many clients already (SQLSTATE 53300)"
        );
    }

    #[test]
    fn localized_severity_and_unknown_fields() {
        let body = b"SFEHLER\0VERROR\0C42P01\0Mx\0Zfuture field\0P17\0\0";
        let f = ErrorFields::parse(body).unwrap();
        assert_eq!(f.severity.as_deref(), Some("FEHLER"));
        assert_eq!(f.severity_level(), Some(Severity::Error));
        assert_eq!(f.position.as_deref(), Some("17"));
    }

    #[test]
    fn lossy_text_and_bad_code() {
        let f = ErrorFields::parse(b"M\xe9t\xe9\0Cnope\0\0").unwrap();
        assert_eq!(f.message.as_deref(), Some("\u{fffd}t\u{fffd}"));
        assert_eq!(f.code, None);
    }

    #[test]
    fn rejects_truncation() {
        assert!(ErrorFields::parse(b"").is_err());
        assert!(ErrorFields::parse(b"Mabc").is_err());
        assert!(ErrorFields::parse(b"Mabc\0").is_err());
        assert!(ErrorFields::parse(b"\0junk").is_err());
        assert_eq!(ErrorFields::parse(b"\0"), Ok(ErrorFields::default()));
    }
}
