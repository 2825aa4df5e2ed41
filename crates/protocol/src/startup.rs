//! Startup-phase packets: the first thing a client sends, before regular messages.
//!
//! These have no type byte: a big-endian `i32` length (counting itself), then a 32-bit code that
//! is either a protocol version (StartupMessage) or one of three magic numbers (SSLRequest,
//! GSSENCRequest, CancelRequest).
//!
//! Protocol versions: a major version other than 3 is an error
//! ([`ProtocolError::UnsupportedProtocolVersion`], SQLSTATE 0A000), as in PostgreSQL, where the
//! check happens before parameters are read. A 3.x request with x > 0 is returned as a normal
//! [`StartupMessage`] carrying its [`ProtocolVersion`]: the caller answers with
//! NegotiateProtocolVersion (see [`crate::encode::negotiate_protocol_version`]) and continues
//! with 3.0, which is what PostgreSQL does.

use bytes::{Buf, BytesMut};

use crate::error::ProtocolError;
use crate::read::Reader;

/// Largest startup packet accepted, the same bound as PostgreSQL's `MAX_STARTUP_PACKET_LENGTH`.
pub const MAX_STARTUP_PACKET_LEN: usize = 10_000;

/// The code of an SSLRequest (1234.5679).
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The code of a GSSENCRequest (1234.5680).
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// The code of a CancelRequest (1234.5678).
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// A protocol version as requested in a StartupMessage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion {
    /// Major version (3 for every supported client).
    pub major: u16,
    /// Minor version (0, or higher for clients that may use newer features).
    pub minor: u16,
}

impl ProtocolVersion {
    /// Protocol 3.0, the version pgtide speaks.
    pub const V3_0: ProtocolVersion = ProtocolVersion { major: 3, minor: 0 };

    /// Splits the wire code into major (high 16 bits) and minor (low 16 bits).
    pub const fn from_code(code: u32) -> Self {
        ProtocolVersion {
            major: (code >> 16) as u16,
            minor: code as u16,
        }
    }

    /// The wire code (`major << 16 | minor`).
    pub const fn code(self) -> u32 {
        (self.major as u32) << 16 | self.minor as u32
    }
}

/// The key that identifies a backend for cancellation: sent by the server in BackendKeyData and
/// echoed back by a client in CancelRequest.
///
/// pgtide hands its own keys to clients and maps them to server keys, so this type appears on
/// both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// Backend process id.
    pub process_id: i32,
    /// Secret that proves the canceller received the BackendKeyData.
    pub secret_key: i32,
}

/// A StartupMessage: the protocol version and the connection parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupMessage {
    /// Requested protocol version (major is always 3 here).
    pub version: ProtocolVersion,
    /// Parameters in the order sent: `user`, `database`, `options`, `application_name`,
    /// `replication`, `_pq_.*` protocol options, and any run-time setting.
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// The value of the first parameter called `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `user` parameter. PostgreSQL requires it; the caller should reject its absence with
    /// SQLSTATE 28000.
    pub fn user(&self) -> Option<&str> {
        self.param("user")
    }

    /// The `database` parameter as sent.
    pub fn database(&self) -> Option<&str> {
        self.param("database")
    }

    /// The database to connect to: `database`, or the user name when it is absent or empty, as
    /// PostgreSQL defaults it.
    pub fn database_or_user(&self) -> Option<&str> {
        match self.database() {
            Some(db) if !db.is_empty() => Some(db),
            _ => self.user(),
        }
    }

    /// Parameters with the `_pq_.` prefix: protocol extensions that a 3.0 server must list as
    /// unrecognized in NegotiateProtocolVersion.
    pub fn protocol_options(&self) -> impl Iterator<Item = &str> {
        self.params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("_pq_."))
    }
}

/// Any packet a client may send before the regular message flow starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// A connection request with parameters.
    Startup(StartupMessage),
    /// The client asks for TLS; answer with one byte, `S` or `N`.
    SslRequest,
    /// The client asks for GSSAPI encryption; answer `N` to refuse.
    GssEncRequest,
    /// The client asks to cancel the query running on the backend with this key; the
    /// connection carries nothing else and is closed after.
    Cancel(CancelKey),
}

/// Parses and removes one startup-phase packet from the front of `buf`.
///
/// Returns `Ok(None)` and leaves `buf` untouched while the packet is incomplete. A packet whose
/// length is known and complete is removed from `buf` even when it fails to parse, so the caller
/// can still answer with an ErrorResponse.
///
/// # Errors
/// [`ProtocolError::InvalidStartupLength`] (length below 8), [`ProtocolError::Oversized`]
/// (above `max_len`, checked from the length word alone),
/// [`ProtocolError::UnsupportedProtocolVersion`] (major version not 3), and
/// [`ProtocolError::Malformed`] / [`ProtocolError::InvalidUtf8`] for a bad body. All map to
/// SQLSTATE 08P01 except the version error (0A000).
pub fn parse_startup(
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<Option<StartupPacket>, ProtocolError> {
    let Some(&len_bytes) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let declared = u32::from_be_bytes(len_bytes);
    if declared < 8 {
        return Err(ProtocolError::InvalidStartupLength { len: declared });
    }
    let len = declared as usize;
    if len > max_len {
        return Err(ProtocolError::Oversized {
            tag: None,
            len,
            max: max_len,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let packet = buf.split_to(len);
    decode_startup(&packet[4..]).map(Some)
}

/// Decodes a startup packet body (everything after the length word).
fn decode_startup(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let mut code_bytes = &body[..4];
    let code = code_bytes.get_u32();
    let rest = &body[4..];
    match code {
        SSL_REQUEST_CODE => fixed_size(rest, 0, "SSLRequest").map(|_| StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE => {
            fixed_size(rest, 0, "GSSENCRequest").map(|_| StartupPacket::GssEncRequest)
        }
        CANCEL_REQUEST_CODE => {
            fixed_size(rest, 8, "CancelRequest")?;
            let mut r = Reader::new(rest, "CancelRequest");
            Ok(StartupPacket::Cancel(CancelKey {
                process_id: r.i32()?,
                secret_key: r.i32()?,
            }))
        }
        _ => {
            let version = ProtocolVersion::from_code(code);
            if version.major != 3 {
                return Err(ProtocolError::UnsupportedProtocolVersion {
                    major: version.major,
                    minor: version.minor,
                });
            }
            Ok(StartupPacket::Startup(StartupMessage {
                version,
                params: decode_params(rest)?,
            }))
        }
    }
}

fn fixed_size(rest: &[u8], expected: usize, message: &'static str) -> Result<(), ProtocolError> {
    if rest.len() == expected {
        Ok(())
    } else {
        Err(ProtocolError::malformed(message, "wrong packet length"))
    }
}

/// Name/value pairs, each NUL-terminated, ended by one more NUL that must be the last byte.
fn decode_params(rest: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    const MSG: &str = "StartupMessage";
    let missing_terminator =
        || ProtocolError::malformed(MSG, "missing terminator after the last parameter");
    let mut r = Reader::new(rest, MSG);
    let mut params = Vec::new();
    loop {
        if r.rest().is_empty() {
            return Err(missing_terminator());
        }
        let name = r.cstr("parameter name").map_err(|e| match e {
            ProtocolError::Malformed { .. } => missing_terminator(),
            other => other,
        })?;
        if name.is_empty() {
            return if r.rest().is_empty() {
                Ok(params)
            } else {
                Err(ProtocolError::malformed(
                    MSG,
                    "expected terminator as last byte",
                ))
            };
        }
        if r.rest().is_empty() {
            return Err(ProtocolError::malformed(
                MSG,
                "parameter has a name but no value",
            ));
        }
        let value = r.cstr("parameter value")?;
        params.push((name.to_owned(), value.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: u32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&((8 + body.len()) as u32).to_be_bytes());
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(body);
        b
    }

    #[test]
    fn ssl_request_bytes() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f][..]);
        assert_eq!(
            parse_startup(&mut buf, MAX_STARTUP_PACKET_LEN),
            Ok(Some(StartupPacket::SslRequest))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn gssenc_and_cancel() {
        let mut buf = packet(GSSENC_REQUEST_CODE, b"");
        assert_eq!(
            parse_startup(&mut buf, 100),
            Ok(Some(StartupPacket::GssEncRequest))
        );
        let mut buf = packet(
            CANCEL_REQUEST_CODE,
            &[0, 0, 0x30, 0x39, 0xff, 0xff, 0xff, 0xfe],
        );
        assert_eq!(
            parse_startup(&mut buf, 100),
            Ok(Some(StartupPacket::Cancel(CancelKey {
                process_id: 12345,
                secret_key: -2
            })))
        );
        let mut buf = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 1]);
        assert!(matches!(
            parse_startup(&mut buf, 100),
            Err(ProtocolError::Malformed {
                message: "CancelRequest",
                ..
            })
        ));
        assert!(buf.is_empty());
    }

    #[test]
    fn startup_with_params() {
        let mut buf = packet(
            196_608,
            b"user\0app\0database\0appdb\0application_name\0psql\0\0",
        );
        buf.extend_from_slice(b"Q\0"); // the next message stays in the buffer
        let Some(StartupPacket::Startup(m)) = parse_startup(&mut buf, 10_000).unwrap() else {
            panic!("expected startup");
        };
        assert_eq!(m.version, ProtocolVersion::V3_0);
        assert_eq!(m.user(), Some("app"));
        assert_eq!(m.database(), Some("appdb"));
        assert_eq!(m.param("application_name"), Some("psql"));
        assert_eq!(m.params.len(), 3);
        assert_eq!(&buf[..], b"Q\0");
    }

    #[test]
    fn database_defaults_to_user() {
        let mut buf = packet(196_608, b"user\0bob\0\0");
        let Some(StartupPacket::Startup(m)) = parse_startup(&mut buf, 10_000).unwrap() else {
            panic!("expected startup");
        };
        assert_eq!(m.database(), None);
        assert_eq!(m.database_or_user(), Some("bob"));
    }

    #[test]
    fn newer_minor_version_is_returned() {
        let mut buf = packet(0x0003_0002, b"user\0a\0_pq_.x\0y\0\0");
        let Some(StartupPacket::Startup(m)) = parse_startup(&mut buf, 10_000).unwrap() else {
            panic!("expected startup");
        };
        assert_eq!(m.version, ProtocolVersion { major: 3, minor: 2 });
        assert_eq!(m.protocol_options().collect::<Vec<_>>(), ["_pq_.x"]);
    }

    #[test]
    fn other_major_versions_are_rejected() {
        let mut buf = packet(0x0002_0000, b"user\0a\0\0");
        assert_eq!(
            parse_startup(&mut buf, 10_000),
            Err(ProtocolError::UnsupportedProtocolVersion { major: 2, minor: 0 })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn incomplete_waits() {
        let full = packet(196_608, b"user\0app\0\0");
        for cut in 0..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(parse_startup(&mut buf, 10_000), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn bad_lengths() {
        let mut buf = BytesMut::from(&[0u8, 0, 0, 7, 0, 0, 0][..]);
        assert_eq!(
            parse_startup(&mut buf, 10_000),
            Err(ProtocolError::InvalidStartupLength { len: 7 })
        );
        let mut buf = BytesMut::from(&[0u8, 0, 0x27, 0x11][..]);
        assert_eq!(
            parse_startup(&mut buf, MAX_STARTUP_PACKET_LEN),
            Err(ProtocolError::Oversized {
                tag: None,
                len: 10_001,
                max: 10_000
            })
        );
        // 2 GiB: rejected from the four length bytes, nothing allocated.
        let mut buf = BytesMut::from(&[0x80u8, 0, 0, 0][..]);
        let cap = buf.capacity();
        assert!(matches!(
            parse_startup(&mut buf, MAX_STARTUP_PACKET_LEN),
            Err(ProtocolError::Oversized {
                len: 0x8000_0000,
                ..
            })
        ));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn malformed_params() {
        for body in [
            &b""[..],                     // no terminator at all
            b"user\0app\0",               // missing final terminator
            b"user\0\0",                  // name without value
            b"user\0app\0database\0",     // odd count
            b"user\0app\0\0extra\0x\0\0", // terminator not last
            b"user\0app",                 // value not terminated
        ] {
            let mut buf = packet(196_608, body);
            assert!(
                matches!(
                    parse_startup(&mut buf, 10_000),
                    Err(ProtocolError::Malformed { .. })
                ),
                "{body:?}"
            );
        }
        let mut buf = packet(196_608, b"user\0\xff\0\0");
        assert!(matches!(
            parse_startup(&mut buf, 10_000),
            Err(ProtocolError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn version_code_round_trip() {
        assert_eq!(ProtocolVersion::V3_0.code(), 196_608);
        assert_eq!(ProtocolVersion::from_code(SSL_REQUEST_CODE).major, 1234);
        assert_eq!(ProtocolVersion::from_code(SSL_REQUEST_CODE).minor, 5679);
    }
}
