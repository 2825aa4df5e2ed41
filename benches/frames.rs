//! Micro benchmarks of the protocol code on pgtide's hot path, and of the per-login costs.
//!
//! - `frames/*`: delimiting a realistic server→client stream (RowDescription, thousands of
//!   DataRows of mixed sizes, CommandComplete, ReadyForQuery), with [`StreamScanner::feed`] over
//!   16 KiB read chunks (what a session does per read) and with [`Frames`] over the whole
//!   buffer. Reported as bytes/s. `frames_small_rows/*`: the same with small rows only.
//! - `reply/*`: the same two on one pgbench `-S` reply (T, D, C, Z: 66 bytes), the per-
//!   transaction cost that matters at high transaction rates.
//! - `startup/*`: [`parse_startup`] of a libpq-like StartupMessage.
//! - `scram/*`: SCRAM-SHA-256 as the pooler's server side runs it (secret given, both client
//!   messages precomputed), a full exchange with [`ScramClient`] (which pays PBKDF2 with
//!   4096 iterations, as every client does per login), and the same exchange with the keys an
//!   earlier one derived (what pgtide's own server connects pay once a pool kept them).
//!
//! Kept short (a few seconds per benchmark, small samples): `cargo bench -p pgtide-benches`
//! takes about a minute. Results and their reading: docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgtide_protocol::frame::MAX_FRAME_LEN;
use pgtide_protocol::scram::{ScramClient, ScramSecret, ScramServer};
use pgtide_protocol::stream::StreamScanner;
use pgtide_protocol::{
    encode, parse_startup, tag, Frames, StartupPacket, TransactionStatus, MAX_STARTUP_PACKET_LEN,
};

/// What a session reads per syscall (`READ_CHUNK` in pool-core's session.rs).
const READ_CHUNK: usize = 16 * 1024;

/// The tags whose bodies the session captures on the server side.
fn session_captures(t: u8) -> bool {
    matches!(
        t,
        tag::backend::READY_FOR_QUERY
            | tag::backend::PARAMETER_STATUS
            | tag::backend::ERROR_RESPONSE
    )
}

/// Deterministic pseudo-random numbers (xorshift64), so every run scans the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo) as u64) as usize
    }
}

/// Appends one regular message: tag, length patched after `body`.
fn message(buf: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    buf.put_u8(tag);
    let start = buf.len();
    buf.put_i32(0);
    body(buf);
    let len = i32::try_from(buf.len() - start).expect("small message");
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// RowDescription (no encoder in pgtide_protocol: the pooler never writes one).
fn row_description(buf: &mut BytesMut, columns: &[(&str, u32, i16)]) {
    message(buf, tag::backend::ROW_DESCRIPTION, |b| {
        b.put_i16(columns.len() as i16);
        for (i, (name, type_oid, typlen)) in columns.iter().enumerate() {
            b.put_slice(name.as_bytes());
            b.put_u8(0);
            b.put_u32(16_384); // table oid
            b.put_i16(i as i16 + 1); // attnum
            b.put_u32(*type_oid);
            b.put_i16(*typlen);
            b.put_i32(-1); // typmod
            b.put_i16(0); // text format
        }
    });
}

/// DataRow with text values; `None` is SQL NULL.
fn data_row(buf: &mut BytesMut, values: &[Option<&[u8]>]) {
    message(buf, tag::backend::DATA_ROW, |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
    });
}

/// A mixed server→client stream: `sets` result sets of `rows` rows each. Payload sizes: 90 %
/// 16–256 bytes, 9 % 1–4 KiB, 1 % 32–96 KiB (those span several 16 KiB reads); some NULLs.
/// With `small_only`, every payload is 16–256 bytes (an OLTP-like stream, more frames per byte).
fn mixed_stream(sets: usize, rows: usize, small_only: bool) -> (BytesMut, usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let filler = vec![b'x'; 96 * 1024];
    let mut buf = BytesMut::new();
    let mut frames = 0;
    for _ in 0..sets {
        row_description(
            &mut buf,
            &[
                ("id", 23, 4),
                ("name", 25, -1),
                ("payload", 25, -1),
                ("updated_at", 1184, 8),
            ],
        );
        frames += 1;
        for r in 0..rows {
            let id = format!("{}", rng.range(1, 10_000_000));
            let name_len = rng.range(8, 40);
            let p = if small_only { 99 } else { rng.range(0, 100) };
            let payload_len = match p {
                0 => rng.range(32 * 1024, 96 * 1024),
                1..=9 => rng.range(1024, 4096),
                _ => rng.range(16, 256),
            };
            let payload = (r % 17 != 0).then(|| &filler[..payload_len]);
            data_row(
                &mut buf,
                &[
                    Some(id.as_bytes()),
                    Some(&filler[..name_len]),
                    payload,
                    Some(b"2024-05-01 12:34:56.789012+00"),
                ],
            );
            frames += 1;
        }
        encode::command_complete(&mut buf, &format!("SELECT {rows}"));
        encode::ready_for_query(&mut buf, TransactionStatus::Idle);
        frames += 2;
    }
    (buf, frames)
}

/// The reply to pgbench's `-S` query in simple mode: T, one D, C, Z.
fn pgbench_select_reply() -> BytesMut {
    let mut buf = BytesMut::new();
    row_description(&mut buf, &[("abalance", 23, 4)]);
    data_row(&mut buf, &[Some(b"0")]);
    encode::command_complete(&mut buf, "SELECT 1");
    encode::ready_for_query(&mut buf, TransactionStatus::Idle);
    buf
}

/// Scans `data` as the session does; returns (frames, ReadyForQuery count) so nothing is
/// optimised away.
fn scan_chunks(data: &[u8], chunk: usize) -> (usize, usize) {
    let mut scanner = StreamScanner::new(MAX_FRAME_LEN);
    let (mut frames, mut ready) = (0, 0);
    for piece in data.chunks(chunk) {
        scanner
            .feed(piece, session_captures, |f| {
                frames += 1;
                if f.tag == tag::backend::READY_FOR_QUERY && f.body == Some(&b"I"[..]) {
                    ready += 1;
                }
            })
            .expect("valid stream");
    }
    assert!(scanner.at_boundary());
    (frames, ready)
}

fn walk_frames(data: &[u8]) -> (usize, usize) {
    let mut it = Frames::new(data, MAX_FRAME_LEN);
    let (mut frames, mut ready) = (0, 0);
    for f in it.by_ref() {
        let f = f.expect("valid stream");
        frames += 1;
        if f.tag == tag::backend::READY_FOR_QUERY && f.body == b"I" {
            ready += 1;
        }
    }
    assert_eq!(it.consumed(), data.len());
    (frames, ready)
}

fn bench_frames(c: &mut Criterion) {
    for (group, small_only) in [("frames", false), ("frames_small_rows", true)] {
        let (stream, frame_count) = mixed_stream(20, 200, small_only);
        assert_eq!(scan_chunks(&stream, READ_CHUNK), (frame_count, 20));
        assert_eq!(walk_frames(&stream), (frame_count, 20));
        eprintln!(
            "{group}: stream of {} bytes, {frame_count} frames (mean {} bytes/frame)",
            stream.len(),
            stream.len() / frame_count
        );
        let mut g = c.benchmark_group(group);
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function("stream_scanner_16k_chunks", |b| {
            b.iter(|| scan_chunks(black_box(&stream), READ_CHUNK))
        });
        g.bench_function("frames_whole_buffer", |b| {
            b.iter(|| walk_frames(black_box(&stream)))
        });
        g.finish();
    }

    let reply = pgbench_select_reply();
    assert_eq!(reply.len(), 66);
    let mut g = c.benchmark_group("reply");
    g.throughput(Throughput::Elements(1));
    let mut scanner = StreamScanner::new(MAX_FRAME_LEN);
    g.bench_function("pgbench_select_stream_scanner", |b| {
        b.iter(|| {
            let mut ready = false;
            scanner
                .feed(black_box(&reply), session_captures, |f| {
                    ready |= f.tag == tag::backend::READY_FOR_QUERY && f.body == Some(&b"I"[..]);
                })
                .expect("valid reply");
            ready
        })
    });
    g.bench_function("pgbench_select_frames", |b| {
        b.iter(|| walk_frames(black_box(&reply)))
    });
    g.finish();
}

fn bench_startup(c: &mut Criterion) {
    // What libpq 15 sends for `psql "host=… user=demo dbname=demo application_name=pgbench"`.
    let mut packet = BytesMut::new();
    encode::startup_message(
        &mut packet,
        &[
            ("user", "demo"),
            ("database", "demo"),
            ("application_name", "pgbench"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("options", "-c statement_timeout=0"),
        ],
    );
    let mut g = c.benchmark_group("startup");
    g.bench_function("parse_startup", |b| {
        b.iter_batched_ref(
            || packet.clone(),
            |buf| match parse_startup(buf, MAX_STARTUP_PACKET_LEN) {
                Ok(Some(StartupPacket::Startup(m))) => m,
                other => panic!("unexpected {other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn bench_scram(c: &mut Criterion) {
    let secret = ScramSecret::derive(b"bench-password", b"0123456789abcdef", 4096);
    let server_nonce = [7u8; 18];

    // One client run whose two messages the server-side benchmark replays (fixed server nonce,
    // so the server-first and hence the client proof are the same every time).
    let mut client = ScramClient::new("bench-password");
    let client_first = client.client_first();
    let mut server = ScramServer::new(secret.clone(), &server_nonce);
    let server_first = server
        .handle_client_first(&client_first)
        .expect("client-first");
    let client_final = client
        .handle_server_first(&server_first)
        .expect("server-first");
    let server_final = server.handle_client_final(&client_final).expect("proof");
    client
        .verify_server_final(&server_final)
        .expect("server-final");

    let mut g = c.benchmark_group("scram");
    g.bench_function("server_verify", |b| {
        b.iter(|| {
            let mut server = ScramServer::new(secret.clone(), &server_nonce);
            server
                .handle_client_first(black_box(&client_first))
                .expect("client-first");
            server
                .handle_client_final(black_box(&client_final))
                .expect("proof")
        })
    });
    // A whole exchange against a fresh server nonce; returns whether the client derived keys.
    let exchange = |mut client: ScramClient| {
        let mut server = ScramServer::with_random_nonce(secret.clone());
        let first = server
            .handle_client_first(&client.client_first())
            .expect("client-first");
        let fin = client.handle_server_first(&first).expect("server-first");
        let done = server.handle_client_final(&fin).expect("proof");
        client.verify_server_final(&done).expect("server-final");
        client.derived_keys()
    };
    g.bench_function("full_exchange_4096_iterations", |b| {
        b.iter(|| assert!(exchange(ScramClient::new("bench-password"))))
    });
    // What pgtide's server connects pay once a pool kept the keys of its first exchange.
    let kept = client.keys().cloned();
    g.bench_function("full_exchange_with_kept_keys", |b| {
        b.iter(|| {
            assert!(!exchange(
                ScramClient::new("bench-password").with_keys(kept.clone())
            ))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_frames, bench_startup, bench_scram
}
criterion_main!(benches);
