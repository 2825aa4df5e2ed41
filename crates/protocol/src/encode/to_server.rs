//! Messages pgtide writes to servers, acting as their client.

use bytes::{BufMut, BytesMut};

use super::{message, put_bytes_with_len, put_cstr, untagged};
use crate::error::ProtocolError;
use crate::frame::{frame_header, HEADER_LEN};
use crate::frontend::{parse_bind_header, Target};
use crate::startup::{CancelKey, ProtocolVersion, CANCEL_REQUEST_CODE, SSL_REQUEST_CODE};
use crate::tag::frontend as tag;

/// StartupMessage for protocol 3.0 with `params` (`user` first by convention, then `database`,
/// `application_name`, settings...). Pairs with an empty name are skipped: an empty name is the
/// list terminator on the wire.
pub fn startup_message<K: AsRef<str>, V: AsRef<str>>(buf: &mut BytesMut, params: &[(K, V)]) {
    untagged(buf, |b| {
        b.put_u32(ProtocolVersion::V3_0.code());
        for (k, v) in params {
            let (k, v) = (k.as_ref(), v.as_ref());
            if k.is_empty() {
                continue;
            }
            put_cstr(b, k.as_bytes());
            put_cstr(b, v.as_bytes());
        }
        b.put_u8(0);
    });
}

/// SSLRequest: `00 00 00 08 04 d2 16 2f`.
pub fn ssl_request(buf: &mut BytesMut) {
    untagged(buf, |b| b.put_u32(SSL_REQUEST_CODE));
}

/// CancelRequest, sent on a fresh connection to the server that runs the query.
pub fn cancel_request(buf: &mut BytesMut, key: CancelKey) {
    untagged(buf, |b| {
        b.put_u32(CANCEL_REQUEST_CODE);
        b.put_i32(key.process_id);
        b.put_i32(key.secret_key);
    });
}

/// PasswordMessage with a cleartext password or an md5 response.
pub fn password_message(buf: &mut BytesMut, password: &str) {
    message(buf, tag::PASSWORD, |b| put_cstr(b, password.as_bytes()));
}

/// SASLInitialResponse: the chosen mechanism and the client-first-message.
pub fn sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    message(buf, tag::PASSWORD, |b| {
        put_cstr(b, mechanism.as_bytes());
        put_bytes_with_len(b, data);
    });
}

/// SASLResponse carrying the client-final-message.
pub fn sasl_response(buf: &mut BytesMut, data: &[u8]) {
    message(buf, tag::PASSWORD, |b| b.put_slice(data));
}

/// Simple Query, e.g. the session reset query or `SET` replays.
pub fn query(buf: &mut BytesMut, sql: &str) {
    message(buf, tag::QUERY, |b| put_cstr(b, sql.as_bytes()));
}

/// Sync.
pub fn sync(buf: &mut BytesMut) {
    message(buf, tag::SYNC, |_| {});
}

/// Flush.
pub fn flush(buf: &mut BytesMut) {
    message(buf, tag::FLUSH, |_| {});
}

/// Terminate, before closing a server connection cleanly.
pub fn terminate(buf: &mut BytesMut) {
    message(buf, tag::TERMINATE, |_| {});
}

/// Parse, to (re-)create a prepared statement on a server.
///
/// # Panics
/// If `param_types` has more than `i16::MAX` entries, which the protocol cannot express.
pub fn parse(buf: &mut BytesMut, name: &str, query: &str, param_types: &[u32]) {
    let count = i16::try_from(param_types.len()).expect("more than 32767 parameter types");
    message(buf, tag::PARSE, |b| {
        put_cstr(b, name.as_bytes());
        put_cstr(b, query.as_bytes());
        b.put_i16(count);
        for &oid in param_types {
            b.put_u32(oid);
        }
    });
}

/// Appends a copy of the Bind message `original` (a whole frame, type byte included) that binds
/// `new_statement` instead; portal, formats and parameter values are copied verbatim. This is
/// how a client's statement name is mapped to the name the pooler used on the server.
///
/// # Errors
/// [`ProtocolError::UnexpectedMessage`] unless `original` is one complete Bind frame,
/// [`ProtocolError::Malformed`] when its names cannot be read. `buf` is unchanged on error.
pub fn rewrite_bind(
    buf: &mut BytesMut,
    original: &[u8],
    new_statement: &str,
) -> Result<(), ProtocolError> {
    let header = frame_header(original, usize::MAX)?
        .ok_or(ProtocolError::malformed("Bind", "frame is truncated"))?;
    if header.tag != tag::BIND {
        return Err(ProtocolError::UnexpectedMessage {
            expected: "Bind",
            tag: header.tag,
        });
    }
    if header.len != original.len() {
        return Err(ProtocolError::malformed(
            "Bind",
            "frame length does not match the bytes given",
        ));
    }
    let body = &original[HEADER_LEN..];
    let bind = parse_bind_header(body)?;
    buf.reserve(original.len() + new_statement.len());
    message(buf, tag::BIND, |b| {
        put_cstr(b, bind.portal.as_bytes());
        put_cstr(b, new_statement.as_bytes());
        b.put_slice(&body[bind.rest_offset..]);
    });
    Ok(())
}

/// Describe of a statement or portal.
pub fn describe(buf: &mut BytesMut, target: Target, name: &str) {
    message(buf, tag::DESCRIBE, |b| {
        b.put_u8(target.as_byte());
        put_cstr(b, name.as_bytes());
    });
}

/// Close of a statement or portal, e.g. to evict a prepared statement from a server.
pub fn close(buf: &mut BytesMut, target: Target, name: &str) {
    message(buf, tag::CLOSE, |b| {
        b.put_u8(target.as_byte());
        put_cstr(b, name.as_bytes());
    });
}

/// Execute of a portal (`max_rows` 0 = all rows).
pub fn execute(buf: &mut BytesMut, portal: &str, max_rows: i32) {
    message(buf, tag::EXECUTE, |b| {
        put_cstr(b, portal.as_bytes());
        b.put_i32(max_rows);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frames;
    use crate::frontend::{
        self, parse_password, parse_sasl_initial_response, BindHeader, FrontendMessage, Parse,
        SaslInitialResponse,
    };
    use crate::startup::{parse_startup, StartupPacket, MAX_STARTUP_PACKET_LEN};

    fn decode_one(buf: &[u8]) -> FrontendMessage<'_> {
        let mut it = Frames::new(buf, 1 << 20);
        let f = it.next().unwrap().unwrap();
        assert_eq!(it.consumed(), buf.len(), "exactly one message");
        frontend::decode(f.tag, f.body).unwrap()
    }

    #[test]
    fn startup_round_trip() {
        let mut buf = BytesMut::new();
        startup_message(
            &mut buf,
            &[("user", "app"), ("", "skipped"), ("database", "db")],
        );
        assert_eq!(&buf[..8], b"\0\0\0\x1e\0\x03\0\0");
        let Some(StartupPacket::Startup(m)) =
            parse_startup(&mut buf, MAX_STARTUP_PACKET_LEN).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            m.params,
            vec![
                ("user".to_owned(), "app".to_owned()),
                ("database".to_owned(), "db".to_owned())
            ]
        );
        // Owned pairs work too.
        let owned = vec![("user".to_owned(), "u".to_owned())];
        startup_message(&mut buf, &owned);
        assert!(parse_startup(&mut buf, MAX_STARTUP_PACKET_LEN)
            .unwrap()
            .is_some());
    }

    #[test]
    fn ssl_and_cancel_bytes() {
        let mut buf = BytesMut::new();
        ssl_request(&mut buf);
        assert_eq!(&buf[..], [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        let mut buf = BytesMut::new();
        let key = CancelKey {
            process_id: 42,
            secret_key: 99,
        };
        cancel_request(&mut buf, key);
        assert_eq!(
            &buf[..],
            [0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 42, 0, 0, 0, 99]
        );
        assert_eq!(
            parse_startup(&mut buf, 100).unwrap(),
            Some(StartupPacket::Cancel(key))
        );
    }

    #[test]
    fn auth_messages() {
        let mut buf = BytesMut::new();
        password_message(&mut buf, "md5abc");
        assert_eq!(&buf[..], b"p\0\0\0\x0bmd5abc\0");
        assert_eq!(parse_password(&buf[5..]), Ok("md5abc"));

        let mut buf = BytesMut::new();
        sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=x");
        assert_eq!(
            parse_sasl_initial_response(&buf[5..]),
            Ok(SaslInitialResponse {
                mechanism: "SCRAM-SHA-256",
                data: b"n,,n=,r=x"
            })
        );
        let mut buf = BytesMut::new();
        sasl_response(&mut buf, b"c=biws");
        assert_eq!(&buf[..], b"p\0\0\0\x0ac=biws");
    }

    #[test]
    fn query_and_control() {
        let mut buf = BytesMut::new();
        query(&mut buf, "SELECT 1");
        assert_eq!(&buf[..], b"Q\0\0\0\x0dSELECT 1\0");
        let mut buf = BytesMut::new();
        sync(&mut buf);
        flush(&mut buf);
        terminate(&mut buf);
        assert_eq!(&buf[..], b"S\0\0\0\x04H\0\0\0\x04X\0\0\0\x04");
    }

    #[test]
    fn extended_protocol_round_trips() {
        let mut buf = BytesMut::new();
        parse(&mut buf, "pgtide_1", "SELECT $1", &[23]);
        assert_eq!(
            decode_one(&buf),
            FrontendMessage::Parse(Parse {
                name: "pgtide_1",
                query: "SELECT $1",
                param_types: vec![23]
            })
        );
        let mut buf = BytesMut::new();
        describe(&mut buf, Target::Statement, "s");
        assert_eq!(&buf[..], b"D\0\0\0\x07Ss\0");
        let mut buf = BytesMut::new();
        close(&mut buf, Target::Portal, "p");
        assert_eq!(
            decode_one(&buf),
            FrontendMessage::Close {
                target: Target::Portal,
                name: "p"
            }
        );
        let mut buf = BytesMut::new();
        execute(&mut buf, "", 0);
        assert_eq!(&buf[..], b"E\0\0\0\x09\0\0\0\0\0");
    }

    #[test]
    fn bind_rewrite() {
        // Bind portal "" statement "s1": no formats, one text parameter "42", no result formats.
        let body: &[u8] = b"\0s1\0\0\0\0\x01\0\0\0\x0242\0\0";
        let mut original = BytesMut::new();
        message(&mut original, b'B', |b| b.put_slice(body));

        let mut out = BytesMut::from(&b"x"[..]);
        rewrite_bind(&mut out, &original, "pgtide_17").unwrap();
        assert_eq!(out[0], b'x');
        let rewritten = &out[1..];
        let FrontendMessage::Bind(h) = decode_one(rewritten) else {
            panic!()
        };
        assert_eq!(
            h,
            BindHeader {
                portal: "",
                statement: "pgtide_17",
                rest_offset: 11
            }
        );
        assert_eq!(&rewritten[HEADER_LEN + h.rest_offset..], &body[4..]);
        assert_eq!(rewritten.len(), original.len() + "pgtide_17".len() - 2);

        let mut out = BytesMut::new();
        assert!(matches!(
            rewrite_bind(&mut out, b"Q\0\0\0\x05\0", "x"),
            Err(ProtocolError::UnexpectedMessage { tag: b'Q', .. })
        ));
        assert!(rewrite_bind(&mut out, &original[..original.len() - 1], "x").is_err());
        assert!(rewrite_bind(&mut out, b"B\0\0\0\x06a\0", "x").is_err());
        assert!(out.is_empty());
    }
}
