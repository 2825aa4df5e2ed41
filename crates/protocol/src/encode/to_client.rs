//! Messages pgtide writes to clients, acting as their server.

use bytes::{BufMut, BytesMut};

use super::{message, put_cstr};
use crate::backend::{auth_code, TransactionStatus};
use crate::error::ProtocolError;
use crate::error_fields::{field, Severity};
use crate::sqlstate::SqlState;
use crate::startup::CancelKey;
use crate::tag::backend as tag;

/// ErrorResponse with the fields drivers and psql show: severity (both the localized `S` and
/// the machine-readable `V` field, as PostgreSQL 9.6+ sends), SQLSTATE, message and optional
/// detail and hint.
pub fn error_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: SqlState,
    msg: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    fields(buf, tag::ERROR_RESPONSE, severity, code, msg, detail, hint);
}

/// NoticeResponse with the same fields as [`error_response`], e.g. a WARNING before a pooler
/// shutdown.
pub fn notice_response(
    buf: &mut BytesMut,
    severity: Severity,
    code: SqlState,
    msg: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    fields(buf, tag::NOTICE_RESPONSE, severity, code, msg, detail, hint);
}

/// ErrorResponse for a [`ProtocolError`], with its SQLSTATE and its (client-safe) text.
pub fn protocol_error_response(buf: &mut BytesMut, severity: Severity, err: &ProtocolError) {
    error_response(buf, severity, err.sqlstate(), &err.to_string(), None, None);
}

fn fields(
    buf: &mut BytesMut,
    tag: u8,
    severity: Severity,
    code: SqlState,
    msg: &str,
    detail: Option<&str>,
    hint: Option<&str>,
) {
    message(buf, tag, |b| {
        let sev = severity.as_str().as_bytes();
        for (kind, value) in [
            (field::SEVERITY, Some(sev)),
            (field::SEVERITY_NONLOCALIZED, Some(sev)),
            (field::CODE, Some(&code.as_bytes()[..])),
            (field::MESSAGE, Some(msg.as_bytes())),
            (field::DETAIL, detail.map(str::as_bytes)),
            (field::HINT, hint.map(str::as_bytes)),
        ] {
            if let Some(value) = value {
                b.put_u8(kind);
                put_cstr(b, value);
            }
        }
        b.put_u8(0);
    });
}

fn auth(buf: &mut BytesMut, code: i32, rest: impl FnOnce(&mut BytesMut)) {
    message(buf, tag::AUTHENTICATION, |b| {
        b.put_i32(code);
        rest(b);
    });
}

/// AuthenticationOk.
pub fn auth_ok(buf: &mut BytesMut) {
    auth(buf, auth_code::OK, |_| {});
}

/// AuthenticationCleartextPassword.
pub fn auth_cleartext_password(buf: &mut BytesMut) {
    auth(buf, auth_code::CLEARTEXT_PASSWORD, |_| {});
}

/// AuthenticationMD5Password with the salt the client must hash with.
pub fn auth_md5_password(buf: &mut BytesMut, salt: [u8; 4]) {
    auth(buf, auth_code::MD5_PASSWORD, |b| b.put_slice(&salt));
}

/// AuthenticationSASL offering `mechanisms` (pgtide offers `["SCRAM-SHA-256"]`).
pub fn auth_sasl(buf: &mut BytesMut, mechanisms: &[&str]) {
    auth(buf, auth_code::SASL, |b| {
        for m in mechanisms.iter().filter(|m| !m.is_empty()) {
            put_cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}

/// AuthenticationSASLContinue carrying the SCRAM server-first-message.
pub fn auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, auth_code::SASL_CONTINUE, |b| b.put_slice(data));
}

/// AuthenticationSASLFinal carrying the SCRAM server-final-message.
pub fn auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    auth(buf, auth_code::SASL_FINAL, |b| b.put_slice(data));
}

/// ParameterStatus, sent after authentication and when a client moves to a server whose
/// reported settings differ.
pub fn parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    message(buf, tag::PARAMETER_STATUS, |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, value.as_bytes());
    });
}

/// BackendKeyData; pgtide sends its own key and maps cancels to the right server.
pub fn backend_key_data(buf: &mut BytesMut, key: CancelKey) {
    message(buf, tag::BACKEND_KEY_DATA, |b| {
        b.put_i32(key.process_id);
        b.put_i32(key.secret_key);
    });
}

/// ReadyForQuery.
pub fn ready_for_query(buf: &mut BytesMut, status: TransactionStatus) {
    message(buf, tag::READY_FOR_QUERY, |b| b.put_u8(status.as_byte()));
}

/// ParseComplete, e.g. answering a Parse of an already-known statement from the pooler's cache.
pub fn parse_complete(buf: &mut BytesMut) {
    message(buf, tag::PARSE_COMPLETE, |_| {});
}

/// BindComplete.
pub fn bind_complete(buf: &mut BytesMut) {
    message(buf, tag::BIND_COMPLETE, |_| {});
}

/// CloseComplete, e.g. answering a Close of a statement the pooler tracks itself.
pub fn close_complete(buf: &mut BytesMut) {
    message(buf, tag::CLOSE_COMPLETE, |_| {});
}

/// NoData.
pub fn no_data(buf: &mut BytesMut) {
    message(buf, tag::NO_DATA, |_| {});
}

/// CommandComplete with its tag, e.g. `SET` or `DISCARD ALL`.
pub fn command_complete(buf: &mut BytesMut, command_tag: &str) {
    message(buf, tag::COMMAND_COMPLETE, |b| {
        put_cstr(b, command_tag.as_bytes());
    });
}

/// EmptyQueryResponse.
pub fn empty_query_response(buf: &mut BytesMut) {
    message(buf, tag::EMPTY_QUERY_RESPONSE, |_| {});
}

/// NegotiateProtocolVersion: tells a client that asked for 3.x (x > 0) or sent `_pq_.` options
/// which minor version and which options are in effect (pgtide: minor 0, none).
pub fn negotiate_protocol_version(buf: &mut BytesMut, newest_minor: u16, unrecognized: &[&str]) {
    message(buf, tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32(i32::from(newest_minor));
        b.put_i32(i32::try_from(unrecognized.len()).expect("too many options"));
        for opt in unrecognized {
            put_cstr(b, opt.as_bytes());
        }
    });
}

/// The one-byte answer to SSLRequest (`S` = go ahead with TLS, `N` = refused) or GSSENCRequest.
pub fn encryption_response(buf: &mut BytesMut, accept: bool) {
    buf.put_u8(if accept { b'S' } else { b'N' });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{self, Authentication, BackendMessage};
    use crate::frame::Frames;

    fn decode_one(buf: &[u8]) -> BackendMessage<'_> {
        let mut it = Frames::new(buf, 1 << 20);
        let f = it.next().unwrap().unwrap();
        assert_eq!(it.consumed(), buf.len(), "exactly one message");
        backend::decode(f.tag, f.body).unwrap()
    }

    #[test]
    fn error_response_bytes() {
        let mut buf = BytesMut::new();
        error_response(
            &mut buf,
            Severity::Fatal,
            SqlState::INVALID_CATALOG_NAME,
            "database \"x\" does not exist",
            None,
            Some("check [databases]"),
        );
        let expected: &[u8] = b"E\0\0\0\x4aSFATAL\0VFATAL\0C3D000\0\
            Mdatabase \"x\" does not exist\0Hcheck [databases]\0\0";
        assert_eq!(&buf[..], expected);
        let BackendMessage::ErrorResponse(f) = decode_one(&buf) else {
            panic!()
        };
        assert_eq!(f.code, Some(SqlState::INVALID_CATALOG_NAME));
        assert_eq!(f.severity_level(), Some(Severity::Fatal));
        assert_eq!(f.hint.as_deref(), Some("check [databases]"));
        assert_eq!(f.detail, None);
    }

    #[test]
    fn notice_round_trip() {
        let mut buf = BytesMut::new();
        notice_response(
            &mut buf,
            Severity::Warning,
            SqlState::ADMIN_SHUTDOWN,
            "pooler is shutting down",
            Some("d"),
            None,
        );
        let BackendMessage::NoticeResponse(f) = decode_one(&buf) else {
            panic!()
        };
        assert_eq!(f.message.as_deref(), Some("pooler is shutting down"));
        assert_eq!(f.detail.as_deref(), Some("d"));
    }

    #[test]
    fn protocol_error_maps_sqlstate() {
        let mut buf = BytesMut::new();
        protocol_error_response(
            &mut buf,
            Severity::Fatal,
            &ProtocolError::UnsupportedProtocolVersion { major: 2, minor: 0 },
        );
        let BackendMessage::ErrorResponse(f) = decode_one(&buf) else {
            panic!()
        };
        assert_eq!(f.code, Some(SqlState::FEATURE_NOT_SUPPORTED));
    }

    #[test]
    fn auth_round_trips() {
        let mut buf = BytesMut::new();
        auth_ok(&mut buf);
        assert_eq!(&buf[..], b"R\0\0\0\x08\0\0\0\0");
        type Encoder = Box<dyn Fn(&mut BytesMut)>;
        let cases: Vec<(Encoder, Authentication<'static>)> = vec![
            (
                Box::new(auth_cleartext_password),
                Authentication::CleartextPassword,
            ),
            (
                Box::new(|b| auth_md5_password(b, [9, 8, 7, 6])),
                Authentication::Md5Password { salt: [9, 8, 7, 6] },
            ),
            (
                Box::new(|b| auth_sasl(b, &["SCRAM-SHA-256"])),
                Authentication::Sasl {
                    mechanisms: vec!["SCRAM-SHA-256"],
                },
            ),
            (
                Box::new(|b| auth_sasl_continue(b, b"r=x,s=y,i=1")),
                Authentication::SaslContinue {
                    data: b"r=x,s=y,i=1",
                },
            ),
            (
                Box::new(|b| auth_sasl_final(b, b"v=sig")),
                Authentication::SaslFinal { data: b"v=sig" },
            ),
        ];
        for (enc, expected) in cases {
            let mut buf = BytesMut::new();
            enc(&mut buf);
            assert_eq!(decode_one(&buf), BackendMessage::Authentication(expected));
        }
    }

    #[test]
    fn session_messages() {
        let mut buf = BytesMut::new();
        parameter_status(&mut buf, "TimeZone", "UTC");
        assert_eq!(
            decode_one(&buf),
            BackendMessage::ParameterStatus {
                name: "TimeZone",
                value: "UTC"
            }
        );
        let mut buf = BytesMut::new();
        let key = CancelKey {
            process_id: 7,
            secret_key: -9,
        };
        backend_key_data(&mut buf, key);
        assert_eq!(decode_one(&buf), BackendMessage::BackendKeyData(key));
        let mut buf = BytesMut::new();
        ready_for_query(&mut buf, TransactionStatus::InTransaction);
        assert_eq!(&buf[..], b"Z\0\0\0\x05T");
        let mut buf = BytesMut::new();
        command_complete(&mut buf, "SET");
        assert_eq!(
            decode_one(&buf),
            BackendMessage::CommandComplete { tag: "SET" }
        );
    }

    #[test]
    fn empty_messages() {
        type Enc = fn(&mut BytesMut);
        for (enc, expected) in [
            (parse_complete as Enc, &b"1\0\0\0\x04"[..]),
            (bind_complete, b"2\0\0\0\x04"),
            (close_complete, b"3\0\0\0\x04"),
            (no_data, b"n\0\0\0\x04"),
            (empty_query_response, b"I\0\0\0\x04"),
        ] {
            let mut buf = BytesMut::new();
            enc(&mut buf);
            assert_eq!(&buf[..], expected);
        }
    }

    #[test]
    fn negotiate_version_bytes() {
        let mut buf = BytesMut::new();
        negotiate_protocol_version(&mut buf, 0, &["_pq_.x"]);
        assert_eq!(&buf[..], b"v\0\0\0\x13\0\0\0\0\0\0\0\x01_pq_.x\0");
        let mut buf = BytesMut::new();
        encryption_response(&mut buf, false);
        assert_eq!(&buf[..], b"N");
    }
}
