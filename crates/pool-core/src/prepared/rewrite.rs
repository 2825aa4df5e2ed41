//! The two directions of statement tracking: the client's frames rewritten for the server it
//! is bound to, and the server's answers matched against what was sent.
//!
//! Only Parse, Bind, Describe, Close and Query frames are held until complete (they are small
//! or must be read whole); every other frame streams through as it arrives.
//!
//! Known limits (docs/prepared-statements.md): a client Parse of a statement the server already
//! has is answered by the server parsing an empty unnamed statement (so the ParseComplete comes
//! back in order) — a client that relies on an unnamed statement parsed *before* that named
//! Parse and bound after it would bind the empty one. No driver we know does this.

use bytes::BytesMut;
use pgtide_protocol::frame::HEADER_LEN;
use pgtide_protocol::frontend::{self, FrontendMessage, Target};
use pgtide_protocol::tag::{backend as btag, frontend as ftag};
use pgtide_protocol::{encode, frame_header, ProtocolError};

use super::{ClientStatements, Expect, Expected, Registry, ServerStatements, Statement};
use std::sync::Arc;

/// A statement name that never exists on a server: a client's Close of one of its statements
/// becomes a Close of this, which the server answers with CloseComplete in order (closing a
/// missing statement is not an error) while the shared statement stays prepared.
pub const NEVER_PREPARED: &str = "pgtide_closed";

/// Parse of the empty query as the unnamed statement: answered with ParseComplete, costs
/// the server next to nothing.
const EMPTY_UNNAMED_PARSE: [u8; 9] = [ftag::PARSE, 0, 0, 0, 8, 0, 0, 0, 0];

/// What the rewriter works against while a client is bound to a server.
pub struct Bound<'a> {
    /// The pool's statements.
    pub registry: &'a Registry,
    /// What the server has.
    pub server: &'a mut ServerStatements,
    /// `max_prepared_statements`.
    pub cap: usize,
    /// Answers to match.
    pub expect: &'a mut Expected,
    /// Largest frame accepted.
    pub max_len: usize,
}

/// What [`rewrite_client`] made of the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    /// Input bytes dealt with; the rest (an incomplete Parse/Bind/Describe/Close/Query frame)
    /// must be offered again with the next read.
    pub consumed: usize,
    /// The bytes for the server are in `out`; otherwise they are `input[..consumed]` unchanged.
    pub in_out: bool,
}

/// Rewrites statement names in the client's bytes for the bound server. A Parse/Bind/
/// Describe/Close/Query frame that is not complete yet is left for the next read. When nothing
/// needs rewriting (the common case) nothing is copied: the caller forwards the input itself.
pub fn rewrite_client(
    client: &mut ClientStatements,
    input: &[u8],
    out: &mut BytesMut,
    b: &mut Bound<'_>,
) -> Result<Rewritten, ProtocolError> {
    let mut o = Out {
        out,
        input,
        copied: 0,
        frame: 0..0,
    };
    let mut pos = 0;
    loop {
        let rest = &o.input[pos..];
        if client.passthrough_left > 0 {
            let n = client.passthrough_left.min(rest.len());
            if n == 0 {
                break;
            }
            pos += n;
            client.passthrough_left -= n;
            continue;
        }
        let Some(h) = frame_header(rest, b.max_len)? else {
            break;
        };
        match h.tag {
            ftag::PARSE | ftag::BIND | ftag::DESCRIBE | ftag::CLOSE | ftag::QUERY => {
                if rest.len() < h.len {
                    break;
                }
                o.frame = pos..pos + h.len;
                pos += h.len;
                rewrite_frame(client, &mut o, b)?;
            }
            tag => {
                match tag {
                    ftag::SYNC | ftag::FUNCTION_CALL => {
                        b.expect.push_back(Expect::Sync);
                        client.syncs_since_execute += 1;
                    }
                    ftag::EXECUTE => {
                        client.syncs_since_execute = 0;
                        client.in_copy = false;
                    }
                    ftag::COPY_DATA | ftag::COPY_DONE | ftag::COPY_FAIL if !client.in_copy => {
                        // The Syncs between the Execute that started COPY FROM STDIN and its
                        // data were ignored by the server: take them back.
                        client.in_copy = true;
                        for _ in 0..std::mem::take(&mut client.syncs_since_execute) {
                            if b.expect.back() == Some(&Expect::Sync) {
                                b.expect.pop_back();
                            }
                        }
                    }
                    _ => {}
                }
                client.passthrough_left = h.len;
            }
        }
    }
    let copied = o.copied;
    if copied == 0 && out.is_empty() {
        return Ok(Rewritten {
            consumed: pos,
            in_out: false,
        });
    }
    out.extend_from_slice(&input[copied..pos]);
    Ok(Rewritten {
        consumed: pos,
        in_out: true,
    })
}

/// Where rewritten bytes go: input frames pass through by position until one is replaced.
struct Out<'a> {
    out: &'a mut BytesMut,
    input: &'a [u8],
    /// Input bytes already accounted for in `out`.
    copied: usize,
    /// The frame being looked at, within `input`.
    frame: std::ops::Range<usize>,
}

impl Out<'_> {
    /// The current frame's bytes.
    fn frame(&self) -> &[u8] {
        &self.input[self.frame.clone()]
    }

    /// The buffer the current frame's replacement goes into; the unchanged input before the
    /// frame is copied there first, and the frame itself is dropped from the pass-through.
    fn replace(&mut self) -> &mut BytesMut {
        if self.copied < self.frame.start {
            self.out
                .extend_from_slice(&self.input[self.copied..self.frame.start]);
        }
        self.copied = self.copied.max(self.frame.end);
        self.out
    }
}

fn rewrite_frame(
    client: &mut ClientStatements,
    o: &mut Out<'_>,
    b: &mut Bound<'_>,
) -> Result<(), ProtocolError> {
    let input = o.input;
    let frame = &input[o.frame.clone()];
    let tag = frame[0];
    let body = &frame[HEADER_LEN..];
    match tag {
        ftag::PARSE => {
            let name_end = body
                .iter()
                .position(|&c| c == 0)
                .ok_or(ProtocolError::Malformed {
                    message: "Parse",
                    reason: "statement name is not terminated",
                })?;
            if name_end == 0 {
                b.expect.push_back(Expect::Parse {
                    swallow: false,
                    id: None,
                });
                return Ok(());
            }
            let name =
                std::str::from_utf8(&body[..name_end]).map_err(|_| ProtocolError::Malformed {
                    message: "Parse",
                    reason: "statement name is not UTF-8",
                })?;
            let stmt = b.registry.intern(&body[name_end + 1..]);
            client.names.insert(name.into(), stmt.clone());
            if b.server.touch(stmt.id) {
                o.replace().extend_from_slice(&EMPTY_UNNAMED_PARSE);
                b.expect.push_back(Expect::Parse {
                    swallow: false,
                    id: None,
                });
            } else {
                prepare_on_server(&stmt, o.replace(), b, false);
            }
        }
        ftag::BIND => {
            let bind = frontend::parse_bind_header(body)?;
            if let Some(stmt) = client
                .names
                .get(bind.statement)
                .filter(|_| !bind.statement.is_empty())
            {
                let out = o.replace();
                ensure_on_server(stmt, out, b);
                encode::rewrite_bind(out, frame, &stmt.name)?;
            }
        }
        ftag::DESCRIBE | ftag::CLOSE => {
            let (target, name) = match frontend::decode(tag, body)? {
                FrontendMessage::Describe { target, name }
                | FrontendMessage::Close { target, name } => (target, name),
                _ => unreachable!("decode keeps the tag"),
            };
            let mapped = (target == Target::Statement && !name.is_empty())
                .then(|| client.names.get(name).cloned())
                .flatten();
            match (tag, mapped) {
                (ftag::DESCRIBE, Some(stmt)) => {
                    let out = o.replace();
                    ensure_on_server(&stmt, out, b);
                    encode::describe(out, Target::Statement, &stmt.name);
                }
                (ftag::CLOSE, Some(_)) => {
                    client.names.remove(name);
                    encode::close(o.replace(), Target::Statement, NEVER_PREPARED);
                }
                _ => {}
            }
            if tag == ftag::CLOSE {
                b.expect.push_back(Expect::Close { swallow: false });
            }
        }
        ftag::QUERY => {
            client.syncs_since_execute = 0;
            client.in_copy = false;
            rewrite_query(client, o, b);
            b.expect.push_back(Expect::Sync);
        }
        _ => {}
    }
    Ok(())
}

/// Before a Bind or Describe: prepares the statement on the server when it lacks it (the
/// ParseComplete is swallowed).
fn ensure_on_server(stmt: &Arc<Statement>, out: &mut BytesMut, b: &mut Bound<'_>) {
    if !b.server.touch(stmt.id) {
        b.registry.count_reprepare();
        prepare_on_server(stmt, out, b, true);
    }
}

fn prepare_on_server(stmt: &Arc<Statement>, out: &mut BytesMut, b: &mut Bound<'_>, swallow: bool) {
    if let Some(evicted) = b.server.insert(stmt.clone(), b.cap) {
        b.registry.count_eviction();
        encode::close(out, Target::Statement, &evicted.name);
        b.expect.push_back(Expect::Close { swallow: true });
    }
    stmt.encode_parse(out);
    b.expect.push_back(Expect::Parse {
        swallow,
        id: Some(stmt.id),
    });
}

/// Simple-protocol statements that touch prepared statements.
fn rewrite_query(client: &mut ClientStatements, o: &mut Out<'_>, b: &mut Bound<'_>) {
    let body = &o.frame()[HEADER_LEN..];
    let sql = body.strip_suffix(&[0]).unwrap_or(body);
    let text = sql.trim_ascii_start();
    if starts_with_word(text, b"prepare")
        && !starts_with_word(text[b"prepare".len()..].trim_ascii_start(), b"transaction")
    {
        encode::query(o.replace(), REFUSE_SQL_PREPARE);
        return;
    }
    if drops_all_statements(sql) {
        // Every statement of this server session is gone; so is every name the client had.
        client.names.clear();
        b.server.clear();
    } else if starts_with_word(text, b"deallocate") {
        if let Some(stmt) = deallocate_target(text).and_then(|n| client.names.remove(n.as_str())) {
            // Deallocate the server's statement under its real name; prepare it first if this
            // server lacks it, so the command succeeds as it would have on the client's server.
            let out = o.replace();
            if b.server.touch(stmt.id) {
                b.server.remove(stmt.id);
            } else {
                stmt.encode_parse(out);
                b.expect.push_back(Expect::Parse {
                    swallow: true,
                    id: None,
                });
            }
            encode::query(out, &format!("DEALLOCATE {}", stmt.name));
        }
    }
}

/// What a refused SQL `PREPARE` runs instead: the server raises a clear error in order with
/// the client's other answers (and aborts the transaction, as any error would).
const REFUSE_SQL_PREPARE: &str = "DO $pgtide$BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', \
MESSAGE = 'pgtide: SQL PREPARE is not supported in transaction pooling mode (the next transaction may run on another server)', \
HINT = 'Use your driver''s protocol-level prepared statements, which pgtide tracks across servers, or a session-mode pool for PREPARE/EXECUTE.'; END$pgtide$";

fn starts_with_word(text: &[u8], word: &[u8]) -> bool {
    text.len() >= word.len()
        && text[..word.len()].eq_ignore_ascii_case(word)
        && text
            .get(word.len())
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
}

/// Whether `sql` mentions `DISCARD ALL`, `DEALLOCATE ALL` or `DEALLOCATE PREPARE ALL` (any
/// case). Runs on every simple-protocol query, so the `d`s are found with a vectorised search
/// and only they are compared (a per-byte loop cost about 600 instructions per pgbench query).
fn drops_all_statements(sql: &[u8]) -> bool {
    const NEEDLES: [&[u8]; 3] = [b"discard all", b"deallocate all", b"deallocate prepare all"];
    memchr::memchr2_iter(b'd', b'D', sql).any(|i| {
        NEEDLES.iter().any(|n| {
            sql.get(i..i + n.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(n))
        })
    })
}

/// The name in `DEALLOCATE [PREPARE] name [;]` (one statement, nothing after it).
fn deallocate_target(text: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split_ascii_whitespace();
    words.next()?; // DEALLOCATE
    let mut name = words.next()?;
    if name.eq_ignore_ascii_case("prepare") {
        name = words.next()?;
    }
    if words.next().is_some_and(|w| w != ";") {
        return None;
    }
    let name = name.strip_suffix(';').unwrap_or(name);
    if let Some(quoted) = name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        return Some(quoted.replace("\"\"", "\""));
    }
    Some(name.to_ascii_lowercase())
}

/// Matches one server frame against what was sent; true when the client must not see it.
pub fn on_server_frame(tag: u8, expect: &mut Expected, server: &mut ServerStatements) -> bool {
    match tag {
        btag::PARSE_COMPLETE => match expect.pop_front() {
            Some(Expect::Parse { swallow, .. }) => swallow,
            other => misaligned(expect, other),
        },
        btag::CLOSE_COMPLETE => match expect.pop_front() {
            Some(Expect::Close { swallow }) => swallow,
            other => misaligned(expect, other),
        },
        btag::READY_FOR_QUERY => {
            // Everything sent before this sync point is answered; a Parse without its
            // ParseComplete failed (or was skipped after an error): the server lacks it.
            while let Some(e) = expect.pop_front() {
                match e {
                    Expect::Sync => break,
                    Expect::Parse { id: Some(id), .. } => server.remove(id),
                    _ => {}
                }
            }
            false
        }
        _ => false,
    }
}

fn misaligned(expect: &mut Expected, got: Option<Expect>) -> bool {
    tracing::debug!(
        ?got,
        "prepared statement tracking lost step with the server; resetting"
    );
    expect.clear();
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![tag];
        f.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn parse(name: &str, sql: &str) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(sql.as_bytes());
        body.extend_from_slice(&[0, 0, 0]);
        frame(ftag::PARSE, &body)
    }

    fn bind(stmt: &str) -> Vec<u8> {
        let mut body = vec![0];
        body.extend_from_slice(stmt.as_bytes());
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        frame(ftag::BIND, &body)
    }

    fn tags(out: &[u8]) -> Vec<(u8, String)> {
        let mut v = Vec::new();
        let mut i = 0;
        while i < out.len() {
            let len = i32::from_be_bytes(out[i + 1..i + 5].try_into().unwrap()) as usize;
            let body = &out[i + 5..i + 1 + len];
            // Bind: empty portal name first; Close/Describe: the kind byte first.
            let name_at = usize::from(matches!(out[i], ftag::BIND | ftag::CLOSE | ftag::DESCRIBE));
            let name: String = body[name_at..]
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as char)
                .collect();
            v.push((out[i], name));
            i += 1 + len;
        }
        v
    }

    struct Fixture {
        registry: Registry,
        server: ServerStatements,
        expect: Expected,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                registry: Registry::default(),
                server: ServerStatements::default(),
                expect: Expected::new(),
            }
        }

        fn run(&mut self, client: &mut ClientStatements, input: &[u8], cap: usize) -> BytesMut {
            let mut b = Bound {
                registry: &self.registry,
                server: &mut self.server,
                cap,
                expect: &mut self.expect,
                max_len: 1 << 20,
            };
            let mut out = BytesMut::new();
            let r = rewrite_client(client, input, &mut out, &mut b).unwrap();
            assert_eq!(r.consumed, input.len(), "whole frames are all dealt with");
            if !r.in_out {
                out.extend_from_slice(input);
            }
            out
        }
    }

    #[test]
    fn client_names_map_to_shared_server_names_and_missing_ones_are_prepared() {
        let mut f = Fixture::new();
        let mut a = ClientStatements::default();
        let input = [parse("s1", "SELECT 1"), bind("s1"), frame(ftag::SYNC, &[])].concat();
        let out = f.run(&mut a, &input, 10);
        assert_eq!(
            tags(&out),
            [
                (b'P', "pgtide_1".into()),
                (b'B', "pgtide_1".into()),
                (b'S', String::new())
            ]
        );
        // Another client, same SQL under another name, on a new server: prepared there first.
        f.server = ServerStatements::default();
        f.expect.clear();
        let mut b = ClientStatements::default();
        f.run(&mut b, &parse("other", "SELECT 1"), 10);
        assert!(f.server.touch(1));
        // Its Bind on a server that lost the statement: injected Parse, swallowed.
        f.server.clear();
        f.expect.clear();
        let out = f.run(&mut b, &bind("other"), 10);
        assert_eq!(tags(&out)[0], (b'P', "pgtide_1".into()));
        assert_eq!(
            f.expect[0],
            Expect::Parse {
                swallow: true,
                id: Some(1)
            }
        );
        assert!(on_server_frame(
            btag::PARSE_COMPLETE,
            &mut f.expect,
            &mut f.server
        ));
    }

    #[test]
    fn same_name_different_sql_stays_apart() {
        let mut f = Fixture::new();
        let mut a = ClientStatements::default();
        let mut b = ClientStatements::default();
        f.run(&mut a, &parse("q", "SELECT 1"), 10);
        f.run(&mut b, &parse("q", "SELECT 2"), 10);
        assert_ne!(a.names["q"].id, b.names["q"].id);
    }

    #[test]
    fn lru_evicts_with_a_swallowed_close_and_failed_parses_are_forgotten() {
        let mut f = Fixture::new();
        let mut a = ClientStatements::default();
        f.run(&mut a, &parse("a", "SELECT 1"), 1);
        let out = f.run(&mut a, &parse("b", "SELECT 2"), 1);
        assert_eq!(tags(&out)[0], (b'C', "pgtide_1".into()));
        assert_eq!(f.registry.evictions.load(Relaxed), 1);
        assert!(!on_server_frame(
            btag::PARSE_COMPLETE,
            &mut f.expect,
            &mut f.server
        )); // a
        assert!(on_server_frame(
            btag::CLOSE_COMPLETE,
            &mut f.expect,
            &mut f.server
        )); // evict
            // b's Parse fails: ErrorResponse then ReadyForQuery; the server does not have b.
        f.expect.push_back(Expect::Sync);
        on_server_frame(btag::READY_FOR_QUERY, &mut f.expect, &mut f.server);
        assert!(f.server.is_empty());
    }

    #[test]
    fn client_close_keeps_the_shared_statement_and_answers_in_order() {
        let mut f = Fixture::new();
        let mut a = ClientStatements::default();
        f.run(&mut a, &parse("a", "SELECT 1"), 10);
        let mut body = vec![b'S'];
        body.extend_from_slice(b"a\0");
        let out = f.run(&mut a, &frame(ftag::CLOSE, &body), 10);
        assert_eq!(tags(&out), [(b'C', NEVER_PREPARED.into())]);
        assert!(a.names.is_empty());
        assert_eq!(f.server.len(), 1);
    }

    #[test]
    fn sql_prepare_is_refused_and_deallocate_all_forgets_everything() {
        let mut f = Fixture::new();
        let mut a = ClientStatements::default();
        let out = f.run(
            &mut a,
            &frame(ftag::QUERY, b"  prepare x as select 1\0"),
            10,
        );
        assert!(String::from_utf8_lossy(&out).contains("feature_not_supported"));
        let out = f.run(
            &mut a,
            &frame(ftag::QUERY, b"PREPARE TRANSACTION 'x'\0"),
            10,
        );
        assert!(
            String::from_utf8_lossy(&out).contains("PREPARE TRANSACTION"),
            "two-phase commit passes"
        );
        f.run(&mut a, &parse("a", "SELECT 1"), 10);
        f.run(&mut a, &frame(ftag::QUERY, b"DEALLOCATE ALL\0"), 10);
        assert!(a.names.is_empty() && f.server.is_empty());
        assert_eq!(
            deallocate_target(b"DEALLOCATE PREPARE \"Ab\";").as_deref(),
            Some("Ab")
        );
        assert_eq!(deallocate_target(b"deallocate S_1").as_deref(), Some("s_1"));
        assert_eq!(deallocate_target(b"deallocate a; select 1"), None);
    }

    #[test]
    fn discard_and_deallocate_all_are_found_in_any_case_and_place() {
        assert!(drops_all_statements(b"DISCARD ALL"));
        assert!(drops_all_statements(b"select 1; Deallocate All"));
        assert!(drops_all_statements(b"deallocate prepare all;"));
        assert!(!drops_all_statements(b"select d from discard_all_table"));
        assert!(!drops_all_statements(b"deallocate s_1"));
        assert!(!drops_all_statements(b"d"));
        assert!(!drops_all_statements(b""));
    }

    #[test]
    fn large_frames_stream_through_in_pieces() {
        let mut f = Fixture::new();
        let mut a = ClientStatements::default();
        let data = frame(ftag::COPY_DATA, &[7u8; 100]);
        let mut b = Bound {
            registry: &f.registry,
            server: &mut f.server,
            cap: 10,
            expect: &mut f.expect,
            max_len: 1 << 20,
        };
        let mut sent = Vec::new();
        let mut inp = data[..30].to_vec();
        for more in [&data[30..], &[][..]] {
            let mut out = BytesMut::new();
            let r = rewrite_client(&mut a, &inp, &mut out, &mut b).unwrap();
            assert!(!r.in_out, "copy data is never rewritten");
            sent.extend_from_slice(&inp[..r.consumed]);
            inp.drain(..r.consumed);
            inp.extend_from_slice(more);
        }
        assert_eq!(
            sent.len(),
            data.len(),
            "streamed in pieces, nothing held back"
        );
        assert_eq!(&sent[..], &data[..]);
    }
}
