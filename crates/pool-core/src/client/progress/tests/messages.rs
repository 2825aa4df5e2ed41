//! The messages the scripts are made of, byte for byte as PostgreSQL and libpq send them.

use bytes::BytesMut;
use pgtide_protocol::{encode, Severity, SqlState, TransactionStatus};

pub(super) fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

pub(super) fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Frontend messages.
pub(super) mod fe {
    use super::msg;

    pub fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', format!("{sql}\0").as_bytes())
    }
    pub fn parse(sql: &str) -> Vec<u8> {
        msg(b'P', format!("\0{sql}\0\0\0").as_bytes())
    }
    pub fn bind() -> Vec<u8> {
        msg(b'B', b"\0\0\0\0\0\0\0\0")
    }
    pub fn describe() -> Vec<u8> {
        msg(b'D', b"P\0")
    }
    pub fn execute() -> Vec<u8> {
        msg(b'E', b"\0\0\0\0\0")
    }
    pub fn sync() -> Vec<u8> {
        msg(b'S', b"")
    }
    pub fn flush() -> Vec<u8> {
        msg(b'H', b"")
    }
    pub fn copy_data(row: &str) -> Vec<u8> {
        msg(b'd', row.as_bytes())
    }
    pub fn copy_done() -> Vec<u8> {
        msg(b'c', b"")
    }
    pub fn copy_fail() -> Vec<u8> {
        msg(b'f', b"no more\0")
    }
    pub fn terminate() -> Vec<u8> {
        msg(b'X', b"")
    }
    /// Parse/Bind/Describe/Execute/Sync, as libpq's PQexecParams sends it.
    pub fn extended(sql: &str) -> Vec<u8> {
        [parse(sql), bind(), describe(), execute(), sync()].concat()
    }
}

/// Backend messages.
pub(super) mod be {
    use super::*;

    pub fn ready(status: TransactionStatus) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode::ready_for_query(&mut b, status);
        b.to_vec()
    }
    pub fn idle() -> Vec<u8> {
        ready(TransactionStatus::Idle)
    }
    pub fn in_tx() -> Vec<u8> {
        ready(TransactionStatus::InTransaction)
    }
    pub fn failed_tx() -> Vec<u8> {
        ready(TransactionStatus::Failed)
    }
    pub fn complete(tag: &str) -> Vec<u8> {
        msg(b'C', format!("{tag}\0").as_bytes())
    }
    pub fn row_description() -> Vec<u8> {
        msg(
            b'T',
            b"\0\x01a\0\0\0\0\0\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
        )
    }
    pub fn data_row(v: &str) -> Vec<u8> {
        let mut body = vec![0, 1];
        body.extend_from_slice(&(v.len() as u32).to_be_bytes());
        body.extend_from_slice(v.as_bytes());
        msg(b'D', &body)
    }
    pub fn error(code: &[u8; 5], text: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode::error_response(
            &mut b,
            Severity::Error,
            SqlState::new(code),
            text,
            None,
            None,
        );
        b.to_vec()
    }
    pub fn param(name: &str, value: &str) -> Vec<u8> {
        msg(b'S', format!("{name}\0{value}\0").as_bytes())
    }
    pub fn notice(text: &str) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode::notice_response(
            &mut b,
            Severity::Notice,
            SqlState::new(b"00000"),
            text,
            None,
            None,
        );
        b.to_vec()
    }
    pub fn parse_complete() -> Vec<u8> {
        msg(b'1', b"")
    }
    pub fn bind_complete() -> Vec<u8> {
        msg(b'2', b"")
    }
    pub fn copy_in() -> Vec<u8> {
        msg(b'G', b"\0\0\x01\0\0")
    }
    pub fn copy_out() -> Vec<u8> {
        msg(b'H', b"\0\0\x01\0\0")
    }
    pub fn copy_data(row: &str) -> Vec<u8> {
        msg(b'd', row.as_bytes())
    }
    pub fn copy_done() -> Vec<u8> {
        msg(b'c', b"")
    }
    /// What a server answers a one-row SELECT with, before ReadyForQuery.
    pub fn select_one() -> Vec<u8> {
        [row_description(), data_row("1"), complete("SELECT 1")].concat()
    }
    /// The same through the extended protocol (ParseComplete, BindComplete first).
    pub fn extended_select_one() -> Vec<u8> {
        [parse_complete(), bind_complete(), select_one()].concat()
    }
}
