//! The one error type of the crate.
//!
//! Every variant carries enough context (which message, which length, which limit) to be logged
//! as-is, and none carries secret material, so its `Display` text is safe to send to a client.
//! [`ProtocolError::sqlstate`] classifies it for the ErrorResponse the pooler sends back.

use crate::sqlstate::SqlState;

/// Everything that can go wrong while framing, decoding or authenticating.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A regular message header declared a length below 4 (the length counts itself), which no
    /// valid message can have; the stream can no longer be framed.
    #[error("invalid length {len} in header of message type '{}'", char::from(*.tag))]
    InvalidFrameLength {
        /// The message type byte.
        tag: u8,
        /// The declared length (as sent, may be negative).
        len: i32,
    },

    /// A message declared a size above the configured limit. Raised from the header alone, so
    /// nothing is buffered or allocated for it.
    #[error("{} of {len} bytes exceeds the limit of {max} bytes", describe_tag(*.tag))]
    Oversized {
        /// The message type byte, `None` for a startup-phase packet (which has none).
        tag: Option<u8>,
        /// Total size the message would have.
        len: usize,
        /// The limit in force.
        max: usize,
    },

    /// A startup-phase packet declared a length below 8 (length + code).
    #[error("invalid length of startup packet: {len}")]
    InvalidStartupLength {
        /// The declared length.
        len: u32,
    },

    /// The client asked for a protocol major version other than 3.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0")]
    UnsupportedProtocolVersion {
        /// Requested major version.
        major: u16,
        /// Requested minor version.
        minor: u16,
    },

    /// A message's body does not have the structure its type requires.
    #[error("malformed {message} message: {reason}")]
    Malformed {
        /// Name of the message, e.g. `"Parse"`.
        message: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A string field that must be text is not valid UTF-8.
    #[error("{message} message has invalid UTF-8 in {field}")]
    InvalidUtf8 {
        /// Name of the message.
        message: &'static str,
        /// Name of the field.
        field: &'static str,
    },

    /// A message of another type arrived where a specific one was required.
    #[error("expected {expected} message, got message type '{}'", char::from(*.tag))]
    UnexpectedMessage {
        /// Name of the expected message.
        expected: &'static str,
        /// The type byte that arrived.
        tag: u8,
    },

    /// A stored SCRAM secret (auth file, auth_query) cannot be parsed.
    #[error("invalid SCRAM secret: {reason}")]
    InvalidScramSecret {
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The peer broke the SCRAM exchange (bad attribute, wrong nonce, out-of-order step).
    #[error("SCRAM exchange failed: {reason}")]
    Scram {
        /// What went wrong.
        reason: String,
    },

    /// The client asked for SCRAM channel binding, which pgtide does not advertise.
    #[error("channel binding is not supported (SCRAM-SHA-256-PLUS is not offered)")]
    ChannelBindingNotSupported,

    /// The password or SCRAM proof did not match the stored secret.
    #[error("password authentication failed")]
    AuthenticationFailed,
}

impl ProtocolError {
    /// The SQLSTATE to put in the ErrorResponse sent to the peer for this failure, so callers do
    /// not each re-derive the mapping.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            ProtocolError::UnsupportedProtocolVersion { .. }
            | ProtocolError::ChannelBindingNotSupported => SqlState::FEATURE_NOT_SUPPORTED,
            ProtocolError::AuthenticationFailed => SqlState::INVALID_PASSWORD,
            ProtocolError::InvalidScramSecret { .. } => SqlState::INTERNAL_ERROR,
            ProtocolError::InvalidFrameLength { .. }
            | ProtocolError::Oversized { .. }
            | ProtocolError::InvalidStartupLength { .. }
            | ProtocolError::Malformed { .. }
            | ProtocolError::InvalidUtf8 { .. }
            | ProtocolError::UnexpectedMessage { .. }
            | ProtocolError::Scram { .. } => SqlState::PROTOCOL_VIOLATION,
        }
    }

    /// Whether the peer presented wrong credentials (as opposed to breaking the protocol), so
    /// the caller can count `client_auth_failed` / `server_auth_failed` rather than
    /// `protocol_violation`.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, ProtocolError::AuthenticationFailed)
    }

    /// Shorthand used by the decoders.
    pub(crate) fn malformed(message: &'static str, reason: &'static str) -> Self {
        ProtocolError::Malformed { message, reason }
    }

    /// Shorthand used by the SCRAM state machines.
    pub(crate) fn scram(reason: impl Into<String>) -> Self {
        ProtocolError::Scram {
            reason: reason.into(),
        }
    }
}

fn describe_tag(tag: Option<u8>) -> String {
    match tag {
        Some(t) => format!("message type '{}'", char::from(t)),
        None => "startup packet".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_carries_context() {
        let e = ProtocolError::Oversized {
            tag: Some(b'Q'),
            len: 2_000_000_000,
            max: 1024,
        };
        assert_eq!(
            e.to_string(),
            "message type 'Q' of 2000000000 bytes exceeds the limit of 1024 bytes"
        );
        let e = ProtocolError::Oversized {
            tag: None,
            len: 20_000,
            max: 10_000,
        };
        assert_eq!(
            e.to_string(),
            "startup packet of 20000 bytes exceeds the limit of 10000 bytes"
        );
        assert_eq!(e.sqlstate(), SqlState::PROTOCOL_VIOLATION);
    }

    #[test]
    fn classification() {
        assert_eq!(
            ProtocolError::AuthenticationFailed.sqlstate(),
            SqlState::INVALID_PASSWORD
        );
        assert_eq!(
            ProtocolError::UnsupportedProtocolVersion { major: 2, minor: 0 }.sqlstate(),
            SqlState::FEATURE_NOT_SUPPORTED
        );
    }
}
