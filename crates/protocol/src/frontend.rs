//! Decoders of the client→server messages the pooler must understand.
//!
//! The pooler reads a client's authentication replies, notices simple queries and transaction
//! boundaries, and tracks named prepared statements (Parse/Bind/Describe/Close) so they can be
//! re-created on whichever server runs them. Values borrow from the frame.
//!
//! Messages tagged `p` (PasswordMessage, SASLInitialResponse, SASLResponse) cannot be told apart
//! by their bytes; [`decode`] returns them as [`FrontendMessage::Password`] with the raw body and
//! the caller, which knows which authentication request it sent, calls [`parse_password`],
//! [`parse_sasl_initial_response`] or [`parse_sasl_response`].

use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::read::Reader;
use crate::tag::frontend as tag;

/// Whether Describe/Close refers to a prepared statement or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `S`
    Statement,
    /// `P`
    Portal,
}

impl Target {
    /// Parses the kind byte.
    pub fn from_byte(b: u8) -> Option<Target> {
        match b {
            b'S' => Some(Target::Statement),
            b'P' => Some(Target::Portal),
            _ => None,
        }
    }

    /// The kind byte.
    pub fn as_byte(self) -> u8 {
        match self {
            Target::Statement => b'S',
            Target::Portal => b'P',
        }
    }
}

/// A Parse message: creates a prepared statement (`name` empty = the unnamed statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name.
    pub name: &'a str,
    /// SQL text.
    pub query: &'a str,
    /// Parameter type OIDs (0 = let the server infer).
    pub param_types: Vec<u32>,
}

/// The start of a Bind message: only what the pooler needs to track or rename a statement.
///
/// The remainder (formats, parameter values, result formats) is left undecoded;
/// `rest_offset` says where it starts so it can be copied verbatim
/// (see [`crate::encode::rewrite_bind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindHeader<'a> {
    /// Destination portal name.
    pub portal: &'a str,
    /// Source prepared statement name.
    pub statement: &'a str,
    /// Offset, within the body, of the bytes after the statement name.
    pub rest_offset: usize,
}

/// A SASLInitialResponse: the mechanism chosen and its first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// E.g. `SCRAM-SHA-256`.
    pub mechanism: &'a str,
    /// The client-first-message; empty when the client sent length -1 (no data).
    pub data: &'a [u8],
}

/// A decoded client→server message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendMessage<'a> {
    /// `Q`
    Query {
        /// SQL text (may hold several statements).
        sql: &'a str,
    },
    /// `P`
    Parse(Parse<'a>),
    /// `B`
    Bind(BindHeader<'a>),
    /// `D`
    Describe {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: &'a str,
    },
    /// `C`
    Close {
        /// Statement or portal.
        target: Target,
        /// Its name.
        name: &'a str,
    },
    /// `E`
    Execute {
        /// Portal name.
        portal: &'a str,
        /// Row limit, 0 for none.
        max_rows: i32,
    },
    /// `S`
    Sync,
    /// `H`
    Flush,
    /// `X`
    Terminate,
    /// `d`
    CopyData(&'a [u8]),
    /// `c`
    CopyDone,
    /// `f`
    CopyFail {
        /// The client's reason.
        message: &'a str,
    },
    /// `p`: password or SASL data; see the module docs.
    Password(&'a [u8]),
    /// Any other message, undecoded.
    Other {
        /// Type byte.
        tag: u8,
        /// Body after the length word.
        body: &'a [u8],
    },
}

impl<'a> FrontendMessage<'a> {
    /// Decodes a frame read from a client.
    ///
    /// # Errors
    /// As [`decode`].
    pub fn decode(frame: &Frame<'a>) -> Result<Self, ProtocolError> {
        decode(frame.tag, frame.body)
    }
}

/// Decodes a client→server message from its type byte and body.
///
/// # Errors
/// [`ProtocolError::Malformed`] / [`ProtocolError::InvalidUtf8`] when the body does not match
/// its type.
pub fn decode(tag: u8, body: &[u8]) -> Result<FrontendMessage<'_>, ProtocolError> {
    Ok(match tag {
        tag::QUERY => {
            let mut r = Reader::new(body, "Query");
            let sql = r.cstr("query")?;
            r.finish()?;
            FrontendMessage::Query { sql }
        }
        tag::PARSE => FrontendMessage::Parse(parse_parse(body)?),
        tag::BIND => FrontendMessage::Bind(parse_bind_header(body)?),
        tag::DESCRIBE => {
            let (target, name) = target_and_name(body, "Describe")?;
            FrontendMessage::Describe { target, name }
        }
        tag::CLOSE => {
            let (target, name) = target_and_name(body, "Close")?;
            FrontendMessage::Close { target, name }
        }
        tag::EXECUTE => {
            let mut r = Reader::new(body, "Execute");
            let portal = r.cstr("portal")?;
            let max_rows = r.i32()?;
            r.finish()?;
            FrontendMessage::Execute { portal, max_rows }
        }
        tag::SYNC => empty(body, "Sync", FrontendMessage::Sync)?,
        tag::FLUSH => empty(body, "Flush", FrontendMessage::Flush)?,
        tag::TERMINATE => empty(body, "Terminate", FrontendMessage::Terminate)?,
        tag::COPY_DATA => FrontendMessage::CopyData(body),
        tag::COPY_DONE => empty(body, "CopyDone", FrontendMessage::CopyDone)?,
        tag::COPY_FAIL => {
            let mut r = Reader::new(body, "CopyFail");
            let message = r.cstr("message")?;
            r.finish()?;
            FrontendMessage::CopyFail { message }
        }
        tag::PASSWORD => FrontendMessage::Password(body),
        other => FrontendMessage::Other { tag: other, body },
    })
}

/// Decodes a Parse body.
///
/// # Errors
/// [`ProtocolError::Malformed`] on truncation, a negative type count or trailing bytes.
pub fn parse_parse(body: &[u8]) -> Result<Parse<'_>, ProtocolError> {
    let mut r = Reader::new(body, "Parse");
    let name = r.cstr("statement name")?;
    let query = r.cstr("query")?;
    let count = r.i16()?;
    let count = usize::try_from(count)
        .map_err(|_| ProtocolError::malformed("Parse", "negative parameter type count"))?;
    // Bound the allocation by what the body can actually hold.
    if r.rest().len() != count * 4 {
        return Err(ProtocolError::malformed(
            "Parse",
            "parameter type count does not match the body length",
        ));
    }
    let mut param_types = Vec::with_capacity(count);
    for _ in 0..count {
        param_types.push(r.u32()?);
    }
    Ok(Parse {
        name,
        query,
        param_types,
    })
}

/// Decodes the portal and statement names at the start of a Bind body.
///
/// # Errors
/// [`ProtocolError::Malformed`] / [`ProtocolError::InvalidUtf8`] when either name is bad.
pub fn parse_bind_header(body: &[u8]) -> Result<BindHeader<'_>, ProtocolError> {
    let mut r = Reader::new(body, "Bind");
    let portal = r.cstr("portal name")?;
    let statement = r.cstr("statement name")?;
    Ok(BindHeader {
        portal,
        statement,
        rest_offset: r.position(),
    })
}

/// Decodes a PasswordMessage: a cleartext password or an `md5…` response.
///
/// # Errors
/// [`ProtocolError::Malformed`] / [`ProtocolError::InvalidUtf8`].
pub fn parse_password(body: &[u8]) -> Result<&str, ProtocolError> {
    let mut r = Reader::new(body, "PasswordMessage");
    let password = r.cstr("password")?;
    r.finish()?;
    Ok(password)
}

/// Decodes a SASLInitialResponse.
///
/// # Errors
/// [`ProtocolError::Malformed`] when the data length does not match the body.
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<SaslInitialResponse<'_>, ProtocolError> {
    let mut r = Reader::new(body, "SASLInitialResponse");
    let mechanism = r.cstr("mechanism")?;
    let len = r.i32()?;
    let data = if len == -1 {
        &[][..]
    } else {
        let len = usize::try_from(len)
            .map_err(|_| ProtocolError::malformed("SASLInitialResponse", "negative data length"))?;
        r.bytes(len)?
    };
    r.finish()?;
    Ok(SaslInitialResponse { mechanism, data })
}

/// Decodes a SASLResponse: the body is the mechanism data itself.
pub fn parse_sasl_response(body: &[u8]) -> &[u8] {
    body
}

fn target_and_name<'a>(
    body: &'a [u8],
    message: &'static str,
) -> Result<(Target, &'a str), ProtocolError> {
    let mut r = Reader::new(body, message);
    let target = Target::from_byte(r.u8()?)
        .ok_or(ProtocolError::malformed(message, "kind must be 'S' or 'P'"))?;
    let name = r.cstr("name")?;
    r.finish()?;
    Ok((target, name))
}

fn empty<'a>(
    body: &[u8],
    message: &'static str,
    msg: FrontendMessage<'a>,
) -> Result<FrontendMessage<'a>, ProtocolError> {
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

    #[test]
    fn known_query_frame() {
        let buf = b"Q\0\0\0\x0dSELECT 1\0";
        let f = Frames::new(buf, 100).next().unwrap().unwrap();
        assert_eq!(
            FrontendMessage::decode(&f),
            Ok(FrontendMessage::Query { sql: "SELECT 1" })
        );
        assert!(decode(b'Q', b"SELECT 1").is_err());
        assert!(decode(b'Q', b"SELECT 1\0x").is_err());
    }

    #[test]
    fn parse_message() {
        let body = b"s1\0SELECT $1, $2\0\0\x02\0\0\0\x17\0\0\0\0";
        assert_eq!(
            decode(b'P', body),
            Ok(FrontendMessage::Parse(Parse {
                name: "s1",
                query: "SELECT $1, $2",
                param_types: vec![23, 0]
            }))
        );
        assert!(parse_parse(b"s1\0q\0\0\x02\0\0\0\x17").is_err());
        assert!(parse_parse(b"s1\0q\0\xff\xff").is_err());
        assert!(parse_parse(b"s1\0q\0\x7f\xff").is_err());
        assert_eq!(
            parse_parse(b"\0q\0\0\0").unwrap().param_types,
            Vec::<u32>::new()
        );
    }

    #[test]
    fn bind_header() {
        let body = b"\0s1\0\0\0\0\x01\0\0\0\x011\0\0";
        let h = parse_bind_header(body).unwrap();
        assert_eq!((h.portal, h.statement, h.rest_offset), ("", "s1", 4));
        assert_eq!(&body[h.rest_offset..], b"\0\0\0\x01\0\0\0\x011\0\0");
        assert!(parse_bind_header(b"p\0s1").is_err());
    }

    #[test]
    fn describe_close_execute() {
        assert_eq!(
            decode(b'D', b"Ss1\0"),
            Ok(FrontendMessage::Describe {
                target: Target::Statement,
                name: "s1"
            })
        );
        assert_eq!(
            decode(b'C', b"P\0"),
            Ok(FrontendMessage::Close {
                target: Target::Portal,
                name: ""
            })
        );
        assert!(decode(b'C', b"Xs\0").is_err());
        assert_eq!(
            decode(b'E', b"\0\0\0\0\x0a"),
            Ok(FrontendMessage::Execute {
                portal: "",
                max_rows: 10
            })
        );
    }

    #[test]
    fn empty_bodies() {
        assert_eq!(decode(b'S', b""), Ok(FrontendMessage::Sync));
        assert_eq!(decode(b'H', b""), Ok(FrontendMessage::Flush));
        assert_eq!(decode(b'X', b""), Ok(FrontendMessage::Terminate));
        assert_eq!(decode(b'c', b""), Ok(FrontendMessage::CopyDone));
        assert!(decode(b'S', b"x").is_err());
        assert_eq!(
            decode(b'd', b"1\t2\n"),
            Ok(FrontendMessage::CopyData(b"1\t2\n"))
        );
        assert_eq!(
            decode(b'f', b"oops\0"),
            Ok(FrontendMessage::CopyFail { message: "oops" })
        );
    }

    #[test]
    fn password_family() {
        assert_eq!(
            decode(b'p', b"pw\0"),
            Ok(FrontendMessage::Password(b"pw\0"))
        );
        assert_eq!(parse_password(b"secret\0"), Ok("secret"));
        assert!(parse_password(b"secret").is_err());
        let body = b"SCRAM-SHA-256\0\0\0\0\x05n,,ab";
        assert_eq!(
            parse_sasl_initial_response(body),
            Ok(SaslInitialResponse {
                mechanism: "SCRAM-SHA-256",
                data: b"n,,ab"
            })
        );
        assert_eq!(
            parse_sasl_initial_response(b"X\0\xff\xff\xff\xff")
                .unwrap()
                .data,
            b""
        );
        assert!(parse_sasl_initial_response(b"X\0\0\0\0\x09ab").is_err());
        assert!(parse_sasl_initial_response(b"X\0\xff\xff\xff\xfe").is_err());
        assert_eq!(parse_sasl_response(b"c=biws"), b"c=biws");
    }
}
