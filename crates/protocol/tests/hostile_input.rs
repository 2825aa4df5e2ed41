//! Property tests: arbitrary bytes never panic the framers, decoders or SCRAM state machines,
//! and what the encoders write decodes back to what went in.

use bytes::BytesMut;
use pgtide_protocol::backend::{self, decode_authentication, decode_ready_for_query};
use pgtide_protocol::encode;
use pgtide_protocol::frame::{MAX_AUTH_MESSAGE_LEN, MAX_MESSAGE_LEN};
use pgtide_protocol::frontend::{
    self, parse_bind_header, parse_parse, parse_password, parse_sasl_initial_response,
    FrontendMessage, Parse,
};
use pgtide_protocol::{
    frame_header, parse_startup, take_frame, BackendMessage, ErrorFields, Frames, ProtocolError,
    ScramClient, ScramSecret, ScramServer, Severity, SqlState, StartupPacket,
    MAX_STARTUP_PACKET_LEN,
};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

/// Bytes biased towards plausible messages: a known tag and a small, often correct length.
fn framed_soup() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        (
            prop::sample::select(b"QPBDCESHXdcfpRKSZEN123nIGHWvtTDA".to_vec()),
            bytes(24),
            any::<bool>(),
            -8i32..64,
        ),
        0..8,
    )
    .prop_map(|parts| {
        let mut out = Vec::new();
        for (tag, body, honest, len) in parts {
            out.push(tag);
            let len = if honest { body.len() as i32 + 4 } else { len };
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
        }
        out
    })
}

fn no_nul() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,40}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frame_header_never_panics(buf in bytes(16), max_len in 0usize..100_000) {
        if let Ok(Some(h)) = frame_header(&buf, max_len) {
            prop_assert!(h.len >= 5 && h.len <= max_len);
            prop_assert_eq!(h.tag, buf[0]);
        }
    }

    #[test]
    fn frames_account_for_every_byte(buf in prop_oneof![bytes(256), framed_soup()]) {
        let mut it = Frames::new(&buf, 64);
        let mut covered = 0;
        for f in it.by_ref() {
            let Ok(f) = f else { break };
            prop_assert_eq!(f.bytes.as_ptr(), buf[covered..].as_ptr());
            prop_assert_eq!(f.bytes.len(), f.body.len() + 5);
            covered += f.bytes.len();
            // Decoding either direction must not panic either.
            let _ = backend::decode(f.tag, f.body);
            let _ = frontend::decode(f.tag, f.body);
        }
        prop_assert_eq!(it.consumed(), covered);
        prop_assert_eq!(it.remainder(), &buf[covered..]);
    }

    #[test]
    fn take_frame_is_consistent(buf in framed_soup()) {
        let mut b = BytesMut::from(&buf[..]);
        let mut total = 0;
        while let Ok(Some(f)) = take_frame(&mut b, 64) {
            total += f.len();
        }
        prop_assert_eq!(total + b.len(), buf.len());
    }

    #[test]
    fn parse_startup_never_panics(buf in prop_oneof![
        bytes(64),
        // A valid length word with random content.
        bytes(56).prop_map(|body| {
            let mut v = ((body.len() + 4) as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        }),
        // Protocol 3.0 with random parameters.
        bytes(56).prop_map(|params| {
            let mut v = ((params.len() + 8) as u32).to_be_bytes().to_vec();
            v.extend_from_slice(&196_608u32.to_be_bytes());
            v.extend_from_slice(&params);
            v
        }),
    ]) {
        let mut b = BytesMut::from(&buf[..]);
        match parse_startup(&mut b, MAX_STARTUP_PACKET_LEN) {
            Ok(None) => prop_assert_eq!(&b[..], &buf[..]),
            Ok(Some(_)) | Err(_) => prop_assert!(b.len() <= buf.len()),
        }
    }

    #[test]
    fn body_decoders_never_panic(tag in any::<u8>(), body in bytes(64)) {
        let _ = backend::decode(tag, &body);
        let _ = frontend::decode(tag, &body);
        let _ = decode_authentication(&body);
        let _ = decode_ready_for_query(&body);
        let _ = ErrorFields::parse(&body);
        let _ = parse_parse(&body);
        let _ = parse_password(&body);
        let _ = parse_sasl_initial_response(&body);
        if let Ok(h) = parse_bind_header(&body) {
            prop_assert!(h.rest_offset <= body.len());
        }
    }

    #[test]
    fn scram_server_never_panics(first in bytes(64), last in bytes(128)) {
        let secret = ScramSecret::derive(b"pw", b"salt", 1);
        let mut server = ScramServer::new(secret, b"nonce");
        let _ = server.handle_client_first(&first);
        let _ = server.handle_client_final(&last);
        prop_assert!(!server.is_done());
    }

    #[test]
    fn scram_server_with_valid_first_never_panics(last in "[a-z]=[ -~]{0,60}(,[a-z]=[ -~]{0,60}){0,3}") {
        let secret = ScramSecret::derive(b"pw", b"salt", 1);
        let mut server = ScramServer::new(secret, b"nonce");
        server.handle_client_first(b"n,,n=,r=abc").unwrap();
        prop_assert!(server.handle_client_final(last.as_bytes()).is_err());
    }

    #[test]
    fn scram_client_never_panics(first in bytes(96), last in bytes(64)) {
        let mut client = ScramClient::new("pw");
        let _ = client.handle_server_first(&first);
        let _ = client.verify_server_final(&last);
    }

    #[test]
    fn scram_secret_parse_never_panics(s in "(SCRAM-SHA-256\\$)?[ -~]{0,80}") {
        let _ = ScramSecret::parse(&s);
    }

    #[test]
    fn query_round_trip(sql in no_nul()) {
        let mut buf = BytesMut::new();
        encode::query(&mut buf, &sql);
        let f = Frames::new(&buf, MAX_MESSAGE_LEN).next().unwrap().unwrap();
        prop_assert_eq!(frontend::decode(f.tag, f.body).unwrap(), FrontendMessage::Query { sql: &sql });
    }

    #[test]
    fn parse_round_trip(name in no_nul(), query in no_nul(), types in proptest::collection::vec(any::<u32>(), 0..20)) {
        let mut buf = BytesMut::new();
        encode::parse(&mut buf, &name, &query, &types);
        let f = Frames::new(&buf, MAX_MESSAGE_LEN).next().unwrap().unwrap();
        prop_assert_eq!(
            frontend::decode(f.tag, f.body).unwrap(),
            FrontendMessage::Parse(Parse { name: &name, query: &query, param_types: types.clone() })
        );
    }

    #[test]
    fn bind_rewrite_keeps_the_rest(portal in no_nul(), stmt in no_nul(), new in no_nul(), rest in bytes(64)) {
        let mut body = Vec::new();
        body.extend_from_slice(portal.as_bytes());
        body.push(0);
        body.extend_from_slice(stmt.as_bytes());
        body.push(0);
        body.extend_from_slice(&rest);
        let mut original = vec![b'B'];
        original.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        original.extend_from_slice(&body);

        let mut out = BytesMut::new();
        encode::rewrite_bind(&mut out, &original, &new).unwrap();
        let f = Frames::new(&out, MAX_MESSAGE_LEN).next().unwrap().unwrap();
        let h = parse_bind_header(f.body).unwrap();
        prop_assert_eq!(h.portal, portal.as_str());
        prop_assert_eq!(h.statement, new.as_str());
        prop_assert_eq!(&f.body[h.rest_offset..], &rest[..]);
    }

    #[test]
    fn error_response_round_trip(msg in no_nul(), detail in proptest::option::of(no_nul()), hint in proptest::option::of(no_nul())) {
        let mut buf = BytesMut::new();
        encode::error_response(&mut buf, Severity::Error, SqlState::QUERY_CANCELED, &msg, detail.as_deref(), hint.as_deref());
        let f = Frames::new(&buf, MAX_MESSAGE_LEN).next().unwrap().unwrap();
        let BackendMessage::ErrorResponse(e) = backend::decode(f.tag, f.body).unwrap() else {
            return Err(TestCaseError::fail("not an ErrorResponse"));
        };
        prop_assert_eq!(e.code, Some(SqlState::QUERY_CANCELED));
        prop_assert_eq!(e.message, Some(msg));
        prop_assert_eq!(e.detail, detail);
        prop_assert_eq!(e.hint, hint);
    }

    #[test]
    fn startup_round_trip(params in proptest::collection::vec(("[a-z_]{1,12}", no_nul()), 0..6)) {
        let mut buf = BytesMut::new();
        encode::startup_message(&mut buf, &params);
        let got = parse_startup(&mut buf, usize::MAX).unwrap().unwrap();
        let StartupPacket::Startup(m) = got else {
            return Err(TestCaseError::fail("not a StartupMessage"));
        };
        prop_assert_eq!(m.params, params);
        prop_assert!(buf.is_empty());
    }
}

#[test]
fn two_gib_lengths_are_rejected_without_allocating() {
    // Regular message declaring i32::MAX: oversized under any sane limit, from 5 bytes.
    let header = *b"D\x7f\xff\xff\xff";
    for max in [MAX_AUTH_MESSAGE_LEN, MAX_MESSAGE_LEN] {
        assert!(matches!(
            frame_header(&header, max),
            Err(ProtocolError::Oversized {
                len: 0x8000_0000,
                ..
            })
        ));
        let mut it = Frames::new(&header, max);
        assert!(matches!(
            it.next(),
            Some(Err(ProtocolError::Oversized { .. }))
        ));
        assert_eq!(it.consumed(), 0);

        let mut buf = BytesMut::from(&header[..]);
        let cap = buf.capacity();
        assert!(take_frame(&mut buf, max).is_err());
        assert_eq!((buf.len(), buf.capacity()), (5, cap));
    }

    // Startup packet declaring 2 GiB.
    let mut buf = BytesMut::from(&[0x80u8, 0, 0, 0, 0, 3, 0, 0][..]);
    let cap = buf.capacity();
    assert!(matches!(
        parse_startup(&mut buf, MAX_STARTUP_PACKET_LEN),
        Err(ProtocolError::Oversized {
            tag: None,
            len: 0x8000_0000,
            max: MAX_STARTUP_PACKET_LEN
        })
    ));
    assert_eq!((buf.len(), buf.capacity()), (8, cap));
}
