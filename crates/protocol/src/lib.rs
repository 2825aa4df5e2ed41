//! PostgreSQL wire protocol v3 for the pgtide pooler, sans-IO.
//!
//! Everything here works on `&[u8]` and [`bytes::BytesMut`]; nothing reads a socket or knows
//! tokio. The pooler forwards almost all traffic as opaque frames, so this crate is mostly about
//! *delimiting* messages cheaply and safely ([`frame`], [`startup`]), decoding the handful the
//! pooler must act on ([`backend`], [`frontend`]), writing the ones it originates ([`encode`]),
//! and authenticating both sides ([`scram`], [`md5`]). Every length is bounded before anything
//! is buffered, and every decoder returns [`ProtocolError`] rather than panicking on hostile
//! bytes (checked by property tests in `tests/`).
//!
//! # Layout
//! - [`frame`]: regular message framing: [`frame_header`], the [`Frames`] iterator, size limits.
//! - [`startup`]: startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest,
//!   CancelRequest) via [`parse_startup`].
//! - [`backend`]: decoders of server→client messages ([`BackendMessage`]).
//! - [`frontend`]: decoders of client→server messages ([`FrontendMessage`]).
//! - [`error_fields`]: ErrorResponse/NoticeResponse fields ([`ErrorFields`], [`Severity`]).
//! - [`encode`]: encoders, split into [`encode::to_client`] and [`encode::to_server`].
//! - [`stream`]: [`stream::StreamScanner`], frame boundaries across arbitrary read chunks.
//! - [`tag`]: message type bytes, per direction.
//! - [`sqlstate`]: SQLSTATE codes as data ([`SqlState`]).
//! - [`md5`]: md5 password hashing and verification.
//! - [`scram`]: SCRAM-SHA-256 secrets, server and client state machines.
//! - [`error`]: [`ProtocolError`], with [`ProtocolError::sqlstate`] for the reply to send.
//!
//! # Example: scan a server's read buffer, forward it in one write
//! ```
//! use bytes::BytesMut;
//! use pgtide_protocol::frame::MAX_FRAME_LEN;
//! use pgtide_protocol::{backend, encode, tag, Frames, TransactionStatus};
//!
//! let mut from_server = BytesMut::new();
//! encode::command_complete(&mut from_server, "SELECT 1");
//! encode::ready_for_query(&mut from_server, TransactionStatus::Idle);
//! from_server.extend_from_slice(b"D\0\0"); // start of a message not fully read yet
//!
//! let mut frames = Frames::new(&from_server, MAX_FRAME_LEN);
//! let mut release = false;
//! for frame in frames.by_ref() {
//!     let frame = frame?;
//!     if frame.tag == tag::backend::READY_FOR_QUERY {
//!         release = backend::decode_ready_for_query(frame.body)? == TransactionStatus::Idle;
//!     }
//! }
//! let forward = &from_server[..frames.consumed()]; // one write to the client
//! assert_eq!(frames.remainder(), b"D\0\0"); // kept for the next read
//! assert!(release && forward.len() == 20);
//! # Ok::<(), pgtide_protocol::ProtocolError>(())
//! ```
//!
//! # Example: authenticate a client with SCRAM-SHA-256
//! ```
//! use bytes::BytesMut;
//! use pgtide_protocol::scram::{ScramClient, ScramSecret, ScramServer, SCRAM_SHA_256};
//! use pgtide_protocol::{encode, frontend};
//!
//! let secret = ScramSecret::parse(&ScramSecret::derive(b"pw", b"salt", 4096).to_postgres_format())?;
//! let mut server = ScramServer::with_random_nonce(secret);
//! let mut client = ScramClient::new("pw"); // stands in for the application's driver
//!
//! let mut out = BytesMut::new();
//! encode::auth_sasl(&mut out, &[SCRAM_SHA_256]);
//! // SASLInitialResponse body, as the client's `p` frame would carry it:
//! let mut msg = BytesMut::new();
//! encode::sasl_initial_response(&mut msg, client.mechanism(), &client.client_first());
//! let initial = frontend::parse_sasl_initial_response(&msg[5..])?;
//! assert_eq!(initial.mechanism, SCRAM_SHA_256);
//! let server_first = server.handle_client_first(initial.data)?;
//! let client_final = client.handle_server_first(&server_first)?;
//! let server_final = server.handle_client_final(&client_final)?; // Err(AuthenticationFailed) on a bad password
//! encode::auth_sasl_final(&mut out, &server_final);
//! encode::auth_ok(&mut out);
//! client.verify_server_final(&server_final)?;
//! # Ok::<(), pgtide_protocol::ProtocolError>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod encode;
pub mod error;
pub mod error_fields;
pub mod frame;
pub mod frontend;
pub mod md5;
pub mod scram;
pub mod sqlstate;
pub mod startup;
pub mod stream;
pub mod tag;

mod read;

pub use backend::{Authentication, BackendMessage, TransactionStatus};
pub use error::ProtocolError;
pub use error_fields::{ErrorFields, Severity};
pub use frame::{frame_header, take_frame, Frame, FrameHeader, Frames};
pub use frontend::FrontendMessage;
pub use scram::{ScramClient, ScramKeys, ScramSecret, ScramServer};
pub use sqlstate::SqlState;
pub use startup::{
    parse_startup, CancelKey, ProtocolVersion, StartupMessage, StartupPacket,
    MAX_STARTUP_PACKET_LEN,
};
