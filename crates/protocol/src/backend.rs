//! Decoders of the server→client messages the pooler must understand.
//!
//! Everything else (rows, descriptions, COPY data, notifications) comes back as
//! [`BackendMessage::Other`] with its raw body, to be forwarded untouched. Decoded values borrow
//! from the frame, so decoding ReadyForQuery or ParameterStatus on the hot path allocates
//! nothing.

use crate::error::ProtocolError;
use crate::error_fields::ErrorFields;
use crate::frame::Frame;
use crate::read::Reader;
use crate::startup::CancelKey;
use crate::tag::backend as tag;

/// Codes in the first word of an Authentication message.
pub mod auth_code {
    /// Authentication succeeded.
    pub const OK: i32 = 0;
    /// Kerberos V5 (unsupported since PostgreSQL 9.4).
    pub const KERBEROS_V5: i32 = 2;
    /// Send the password in clear text.
    pub const CLEARTEXT_PASSWORD: i32 = 3;
    /// Send the md5-hashed password with the given salt.
    pub const MD5_PASSWORD: i32 = 5;
    /// GSSAPI.
    pub const GSS: i32 = 7;
    /// GSSAPI or SSPI continuation data.
    pub const GSS_CONTINUE: i32 = 8;
    /// SSPI.
    pub const SSPI: i32 = 9;
    /// Start SASL with one of the listed mechanisms.
    pub const SASL: i32 = 10;
    /// SASL challenge.
    pub const SASL_CONTINUE: i32 = 11;
    /// SASL outcome (for SCRAM, the server signature).
    pub const SASL_FINAL: i32 = 12;
}

/// An Authentication message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// Authenticated; parameters and BackendKeyData follow.
    Ok,
    /// The server wants the password in clear text.
    CleartextPassword,
    /// The server wants `md5(md5(password ++ user) ++ salt)`.
    Md5Password {
        /// The salt to hash with.
        salt: [u8; 4],
    },
    /// The server offers SASL with these mechanisms, in its order of preference.
    Sasl {
        /// E.g. `["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]`.
        mechanisms: Vec<&'a str>,
    },
    /// A SASL challenge (SCRAM server-first-message).
    SaslContinue {
        /// Mechanism-specific data.
        data: &'a [u8],
    },
    /// The SASL outcome (SCRAM server-final-message).
    SaslFinal {
        /// Mechanism-specific data.
        data: &'a [u8],
    },
    /// A method pgtide does not implement (Kerberos, GSSAPI, SSPI, future ones).
    Unsupported {
        /// The request code, see [`auth_code`].
        code: i32,
    },
}

/// Transaction state reported by ReadyForQuery; the pooler releases a server in transaction mode
/// only at [`TransactionStatus::Idle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionStatus {
    /// `I`: not in a transaction block.
    Idle,
    /// `T`: in a transaction block.
    InTransaction,
    /// `E`: in a failed transaction block (queries rejected until it ends).
    Failed,
}

impl TransactionStatus {
    /// Parses the status byte.
    pub fn from_byte(b: u8) -> Option<TransactionStatus> {
        match b {
            b'I' => Some(TransactionStatus::Idle),
            b'T' => Some(TransactionStatus::InTransaction),
            b'E' => Some(TransactionStatus::Failed),
            _ => None,
        }
    }

    /// The status byte.
    pub fn as_byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }
}

/// A decoded server→client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendMessage<'a> {
    /// `R`
    Authentication(Authentication<'a>),
    /// `K`: the key for cancel requests to this backend.
    BackendKeyData(CancelKey),
    /// `S`: a reported setting's current value.
    ParameterStatus {
        /// Setting name, e.g. `TimeZone`.
        name: &'a str,
        /// Its value.
        value: &'a str,
    },
    /// `Z`
    ReadyForQuery(TransactionStatus),
    /// `E`
    ErrorResponse(ErrorFields),
    /// `N`
    NoticeResponse(ErrorFields),
    /// `1`
    ParseComplete,
    /// `2`
    BindComplete,
    /// `3`
    CloseComplete,
    /// `n`
    NoData,
    /// `I`
    EmptyQueryResponse,
    /// `C`
    CommandComplete {
        /// E.g. `SELECT 1`, `INSERT 0 3`.
        tag: &'a str,
    },
    /// `G`: the server expects COPY data from the client.
    CopyInResponse,
    /// `H`: the server sends COPY data.
    CopyOutResponse,
    /// `W`: both directions (replication).
    CopyBothResponse,
    /// Any other message, undecoded.
    Other {
        /// Type byte.
        tag: u8,
        /// Body after the length word.
        body: &'a [u8],
    },
}

impl<'a> BackendMessage<'a> {
    /// Decodes a frame read from a server.
    ///
    /// # Errors
    /// [`ProtocolError::Malformed`] / [`ProtocolError::InvalidUtf8`] when the body does not match
    /// its type.
    pub fn decode(frame: &Frame<'a>) -> Result<Self, ProtocolError> {
        decode(frame.tag, frame.body)
    }
}

/// Decodes a server→client message from its type byte and body.
///
/// # Errors
/// [`ProtocolError::Malformed`] / [`ProtocolError::InvalidUtf8`] when the body does not match
/// its type.
pub fn decode(tag: u8, body: &[u8]) -> Result<BackendMessage<'_>, ProtocolError> {
    Ok(match tag {
        tag::AUTHENTICATION => BackendMessage::Authentication(decode_authentication(body)?),
        tag::BACKEND_KEY_DATA => {
            let mut r = Reader::new(body, "BackendKeyData");
            let key = CancelKey {
                process_id: r.i32()?,
                secret_key: r.i32()?,
            };
            r.finish()?;
            BackendMessage::BackendKeyData(key)
        }
        tag::PARAMETER_STATUS => {
            let mut r = Reader::new(body, "ParameterStatus");
            let name = r.cstr("name")?;
            let value = r.cstr("value")?;
            r.finish()?;
            BackendMessage::ParameterStatus { name, value }
        }
        tag::READY_FOR_QUERY => BackendMessage::ReadyForQuery(decode_ready_for_query(body)?),
        tag::ERROR_RESPONSE => BackendMessage::ErrorResponse(ErrorFields::parse(body)?),
        tag::NOTICE_RESPONSE => BackendMessage::NoticeResponse(ErrorFields::parse(body)?),
        tag::PARSE_COMPLETE => empty(body, "ParseComplete", BackendMessage::ParseComplete)?,
        tag::BIND_COMPLETE => empty(body, "BindComplete", BackendMessage::BindComplete)?,
        tag::CLOSE_COMPLETE => empty(body, "CloseComplete", BackendMessage::CloseComplete)?,
        tag::NO_DATA => empty(body, "NoData", BackendMessage::NoData)?,
        tag::EMPTY_QUERY_RESPONSE => empty(
            body,
            "EmptyQueryResponse",
            BackendMessage::EmptyQueryResponse,
        )?,
        tag::COMMAND_COMPLETE => {
            let mut r = Reader::new(body, "CommandComplete");
            let tag = r.cstr("tag")?;
            r.finish()?;
            BackendMessage::CommandComplete { tag }
        }
        tag::COPY_IN_RESPONSE => BackendMessage::CopyInResponse,
        tag::COPY_OUT_RESPONSE => BackendMessage::CopyOutResponse,
        tag::COPY_BOTH_RESPONSE => BackendMessage::CopyBothResponse,
        other => BackendMessage::Other { tag: other, body },
    })
}

/// Decodes only a ReadyForQuery body: the hot-path check for "may this server be released".
///
/// # Errors
/// [`ProtocolError::Malformed`] unless the body is one known status byte.
#[inline]
pub fn decode_ready_for_query(body: &[u8]) -> Result<TransactionStatus, ProtocolError> {
    match body {
        &[b] => TransactionStatus::from_byte(b).ok_or(ProtocolError::malformed(
            "ReadyForQuery",
            "unknown transaction status",
        )),
        _ => Err(ProtocolError::malformed(
            "ReadyForQuery",
            "body must be one byte",
        )),
    }
}

/// Decodes an Authentication body.
///
/// # Errors
/// [`ProtocolError::Malformed`] when the body does not match its code.
pub fn decode_authentication(body: &[u8]) -> Result<Authentication<'_>, ProtocolError> {
    const MSG: &str = "Authentication";
    let mut r = Reader::new(body, MSG);
    let code = r.i32()?;
    let auth = match code {
        auth_code::OK => Authentication::Ok,
        auth_code::CLEARTEXT_PASSWORD => Authentication::CleartextPassword,
        auth_code::MD5_PASSWORD => Authentication::Md5Password { salt: r.array()? },
        auth_code::SASL => {
            let mut mechanisms = Vec::new();
            loop {
                let m = r.cstr("mechanism")?;
                if m.is_empty() {
                    break;
                }
                mechanisms.push(m);
            }
            Authentication::Sasl { mechanisms }
        }
        auth_code::SASL_CONTINUE => Authentication::SaslContinue { data: r.rest() },
        auth_code::SASL_FINAL => Authentication::SaslFinal { data: r.rest() },
        // Unsupported methods may carry data (GSS continue); it is not ours to validate.
        code => return Ok(Authentication::Unsupported { code }),
    };
    if !matches!(
        auth,
        Authentication::SaslContinue { .. } | Authentication::SaslFinal { .. }
    ) {
        r.finish()?;
    }
    Ok(auth)
}

fn empty<'a>(
    body: &[u8],
    message: &'static str,
    msg: BackendMessage<'a>,
) -> Result<BackendMessage<'a>, ProtocolError> {
    if body.is_empty() {
        Ok(msg)
    } else {
        Err(ProtocolError::malformed(message, "body must be empty"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frames;
    use crate::sqlstate::SqlState;

    #[test]
    fn authentication_variants() {
        assert_eq!(decode_authentication(&[0, 0, 0, 0]), Ok(Authentication::Ok));
        assert_eq!(
            decode_authentication(&[0, 0, 0, 3]),
            Ok(Authentication::CleartextPassword)
        );
        assert_eq!(
            decode_authentication(&[0, 0, 0, 5, 1, 2, 3, 4]),
            Ok(Authentication::Md5Password { salt: [1, 2, 3, 4] })
        );
        assert_eq!(
            decode_authentication(b"\0\0\0\x0aSCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
            Ok(Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"]
            })
        );
        assert_eq!(
            decode_authentication(b"\0\0\0\x0br=abc"),
            Ok(Authentication::SaslContinue { data: b"r=abc" })
        );
        assert_eq!(
            decode_authentication(b"\0\0\0\x0cv=xyz"),
            Ok(Authentication::SaslFinal { data: b"v=xyz" })
        );
        assert_eq!(
            decode_authentication(&[0, 0, 0, 7]),
            Ok(Authentication::Unsupported { code: 7 })
        );
        assert!(decode_authentication(&[0, 0, 0, 5, 1, 2]).is_err());
        assert!(decode_authentication(&[0, 0, 0, 0, 9]).is_err());
        assert!(decode_authentication(b"\0\0\0\x0aSCRAM-SHA-256\0").is_err());
        assert!(decode_authentication(&[0, 0]).is_err());
    }

    #[test]
    fn startup_response_sequence() {
        // AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery as a server sends them.
        let buf: &[u8] = b"R\0\0\0\x08\0\0\0\0\
            S\0\0\0\x19client_encoding\0UTF8\0\
            K\0\0\0\x0c\0\0\x04\xd2\0\0\x16\x2e\
            Z\0\0\0\x05I";
        let msgs: Vec<_> = Frames::new(buf, 1024)
            .map(|f| BackendMessage::decode(&f.unwrap()).unwrap())
            .collect();
        assert_eq!(
            msgs,
            vec![
                BackendMessage::Authentication(Authentication::Ok),
                BackendMessage::ParameterStatus {
                    name: "client_encoding",
                    value: "UTF8"
                },
                BackendMessage::BackendKeyData(CancelKey {
                    process_id: 1234,
                    secret_key: 5678
                }),
                BackendMessage::ReadyForQuery(TransactionStatus::Idle),
            ]
        );
    }

    #[test]
    fn ready_for_query_statuses() {
        assert_eq!(
            decode_ready_for_query(b"T"),
            Ok(TransactionStatus::InTransaction)
        );
        assert_eq!(decode_ready_for_query(b"E"), Ok(TransactionStatus::Failed));
        assert!(decode_ready_for_query(b"X").is_err());
        assert!(decode_ready_for_query(b"").is_err());
        assert!(decode_ready_for_query(b"II").is_err());
        for s in [
            TransactionStatus::Idle,
            TransactionStatus::InTransaction,
            TransactionStatus::Failed,
        ] {
            assert_eq!(TransactionStatus::from_byte(s.as_byte()), Some(s));
        }
    }

    #[test]
    fn error_and_notice() {
        let BackendMessage::ErrorResponse(f) = decode(
            b'E',
            b"SERROR\0C26000\0Mprepared statement \"s1\" does not exist\0\0",
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(f.code, Some(SqlState::INVALID_SQL_STATEMENT_NAME));
        assert!(matches!(
            decode(b'N', b"SNOTICE\0C00000\0Mhi\0\0"),
            Ok(BackendMessage::NoticeResponse(_))
        ));
    }

    #[test]
    fn simple_messages() {
        assert_eq!(decode(b'1', b""), Ok(BackendMessage::ParseComplete));
        assert_eq!(decode(b'3', b""), Ok(BackendMessage::CloseComplete));
        assert!(decode(b'1', b"x").is_err());
        assert_eq!(
            decode(b'C', b"INSERT 0 1\0"),
            Ok(BackendMessage::CommandComplete { tag: "INSERT 0 1" })
        );
        assert_eq!(decode(b'G', b"\0\0\0"), Ok(BackendMessage::CopyInResponse));
        assert_eq!(
            decode(b'D', b"\0\0"),
            Ok(BackendMessage::Other {
                tag: b'D',
                body: b"\0\0"
            })
        );
        assert!(decode(b'K', b"\0\0\0\x01").is_err());
        assert!(decode(b'S', b"a\0b").is_err());
    }
}
