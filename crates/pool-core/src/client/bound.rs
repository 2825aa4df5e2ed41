//! The forwarding loop while a client is bound to a server.
//!
//! Bytes are forwarded as read — one write per read, never per message — through the buffers
//! the server connection keeps (`server::buffers`), so a transaction allocates no read
//! buffers. Each read is scanned into the release rule ([`Progress`], `client/progress.rs`),
//! which says after every server read whether the server goes back now; a client vanishing
//! mid-transaction or a broken stream closes the server instead. The timers and the server-time
//! clock of the period are in [`Timing`] (`client/timing.rs`).

use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::task::Poll;

use bytes::BytesMut;
use pgtide_protocol::frame::MAX_FRAME_LEN;
use pgtide_protocol::stream::StreamScanner;
use pgtide_protocol::{encode, tag, BackendMessage, ProtocolError, SqlState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;

use super::ending::Unbind;
use super::progress::{self, Boundaries, Progress, Verdict};
use super::refusal::Refusal;
use super::session::Session;
use super::timing::{Canceller, Now, Timing};
use crate::cancel::send_cancel;
use crate::failure::FailureClass;
use crate::pool::Checkout;
use crate::prepared::rewrite::{on_server_frame, rewrite_client, Bound};
use crate::prepared::Expected;
use crate::report::Failure;
use crate::server::buffers::{drop_front, Buffers};
use crate::server::ServerConn;

/// Statement tracking while bound: what the server answers must be matched against.
struct Tracking<'a> {
    expect: &'a mut Expected,
    server: &'a mut crate::prepared::ServerStatements,
    /// Byte ranges (in the server buffer) of answers the client must not see.
    drops: &'a mut Vec<Range<usize>>,
    /// Where the bytes being scanned start in the server buffer.
    offset: usize,
}

/// Everything a bound period works on besides the session itself.
struct Period<'a> {
    /// The server, and the pool's clock of its round trips.
    checkout: &'a mut Checkout,
    cbuf: &'a mut BytesMut,
    sbuf: &'a mut BytesMut,
    /// Client bytes rewritten for this server (statement tracking).
    out: &'a mut BytesMut,
    p: &'a mut Progress,
    /// The prepared statement cap, when statements are tracked.
    track: Option<usize>,
    expect: &'a mut Expected,
    /// Delimits the server's messages (its stream is at a boundary at checkout).
    server_scan: StreamScanner,
    /// Byte ranges (in the server buffer) of answers the client must not see.
    drops: Vec<Range<usize>>,
    /// Server bytes held back (a partial header of an answer that may have to be dropped).
    held: usize,
    timing: Timing,
}

/// Client bytes ready for the server after a read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outgoing {
    /// They are in the rewrite buffer, not the client buffer.
    from_out: bool,
    /// How many to send (fewer than staged when the client sent Terminate).
    len: usize,
    /// Client buffer bytes dealt with; the rest is an incomplete frame kept for the next read.
    consumed: usize,
}

impl Session {
    /// Forwards between the client and the checked-out server until the server can be
    /// released, through the server connection's buffers; `first` holds the client bytes that
    /// started the transaction.
    pub(super) async fn bound(
        &mut self,
        checkout: &mut Checkout,
        first: BytesMut,
        p: &mut Progress,
        track: Option<usize>,
        expect: &mut Expected,
    ) -> Unbind {
        let mut bufs = std::mem::take(&mut checkout.conn().buffers);
        bufs.client.extend_from_slice(&first);
        drop(first);
        let outcome = self.forward(checkout, &mut bufs, p, track, expect).await;
        bufs.recycle();
        checkout.conn().buffers = bufs;
        outcome
    }

    /// The body of [`Session::bound`]: sends the first bytes, then serves whichever of the
    /// server, the client and a timeout is ready, until one of them ends the period.
    async fn forward(
        &mut self,
        checkout: &mut Checkout,
        bufs: &mut Buffers,
        p: &mut Progress,
        track: Option<usize>,
        expect: &mut Expected,
    ) -> Unbind {
        let Buffers {
            client: cbuf,
            server: sbuf,
            rewritten: out,
        } = bufs;
        // The first bytes were scanned before the checkout unless statements are tracked.
        let first = match track {
            Some(cap) => self.stage_tracked(checkout.conn(), cbuf, out, expect, p, cap),
            None => Ok(Outgoing {
                from_out: false,
                len: cbuf.len(),
                consumed: cbuf.len(),
            }),
        };
        let first = match first {
            Ok(o) => o,
            Err(e) => return Unbind::violation(&e),
        };
        if let Err(e) = send_client_bytes(checkout.conn(), cbuf, out, first).await {
            return Unbind::lost(e);
        }
        Buffers::ready_to_read(cbuf);
        Buffers::ready_to_read(sbuf);
        let timing = Timing::new(&self.settings, p);
        let mut b = Period {
            checkout,
            cbuf,
            sbuf,
            out,
            p,
            track,
            expect,
            server_scan: StreamScanner::new(MAX_FRAME_LEN),
            drops: Vec::new(),
            held: 0,
            timing,
        };
        // One timer for the whole transaction, made when a timeout first applies (none of them
        // is on by default), moved when the deadline moves, polled only while a timeout applies.
        let mut timer = std::pin::pin!(None::<Sleep>);
        loop {
            let deadline = b.timing.deadline(b.p);
            if let Some(at) = deadline {
                match timer.as_mut().as_pin_mut() {
                    Some(t) if t.deadline() == at => {}
                    Some(t) => t.reset(at),
                    None => timer.set(Some(tokio::time::sleep_until(at))),
                }
            }
            if b.p.terminated {
                // The client is gone. Its stream was cut where Terminate starts, a boundary.
                let at = Boundaries {
                    server: b.server_scan.at_boundary(),
                    client: true,
                };
                return Unbind::ClientGone {
                    reusable: b.p.reusable(at),
                };
            }
            let server = b.checkout.conn();
            let step = tokio::select! {
                biased;
                r = server.stream.read_buf(&mut *b.sbuf) => self.on_server_read(r, &mut b).await,
                r = self.client.read_buf(&mut *b.cbuf) => self.on_client_read(r, &mut b).await,
                _ = poll_fn(|cx| timer.as_mut().as_pin_mut().map_or(Poll::Pending, |t| t.poll(cx))), if deadline.is_some() => {
                    self.on_deadline(&mut b).await
                }
            };
            if let Some(outcome) = step {
                return outcome;
            }
        }
    }

    /// Serves one server read: scans it, forwards it to the client, and applies the release
    /// rule. `Some` ends the period.
    async fn on_server_read(
        &mut self,
        read: io::Result<usize>,
        b: &mut Period<'_>,
    ) -> Option<Unbind> {
        match read {
            Ok(0) => return Some(Unbind::lost("server closed the connection")),
            Ok(_) => {}
            Err(e) => return Some(Unbind::lost(e)),
        }
        let pending_before = b.p.pending;
        let scanned = self.scan_server(b);
        if b.p.canceled > 0 {
            self.count_statement_timeouts(b);
        }
        let mut now = Now::default();
        if b.p.pending == 0 {
            if let Some(slow) = &mut self.slow {
                slow.query_done(&self.failures, self.pool.name(), self.peer);
            }
            b.timing.all_answered(&mut now);
        }
        if let Err(e) = scanned {
            return Some(Unbind::ServerGone {
                class: FailureClass::ProtocolViolation,
                error: e.to_string(),
            });
        }
        if !self.pass_to_client(b).await {
            return Some(Unbind::ClientGone { reusable: false });
        }
        let at = Boundaries {
            server: b.server_scan.at_boundary(),
            client: self.client_scan.at_boundary() && b.cbuf.is_empty(),
        };
        match b.p.verdict(self.mode, at) {
            Verdict::Release => return Some(Unbind::Released),
            Verdict::TransactionBlock => {
                let refusal = Refusal::new(
                    FailureClass::ProtocolViolation,
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "transaction blocks are not allowed in statement pooling mode",
                );
                return Some(Unbind::Refused(Box::new(refusal)));
            }
            Verdict::Keep => {}
        }
        if pending_before > 0 && b.p.pending == 0 {
            // The server stays with the client: the round trip ends here rather than at a
            // release.
            let slot = &self.cancel.slot;
            b.timing
                .round_trip_done(b.checkout, b.p.status, slot, &mut now);
        }
        None
    }

    /// Scans the server bytes not scanned yet into the release rule, and keeps the session's
    /// view of the server up to date: ParameterStatus updates both the client's and the
    /// server's settings; answers to statements pgtide prepared itself are marked for dropping.
    fn scan_server(&mut self, b: &mut Period<'_>) -> Result<(), ProtocolError> {
        let server = b.checkout.conn();
        let mut tracking = b.track.is_some().then_some(Tracking {
            expect: &mut *b.expect,
            server: &mut server.statements,
            drops: &mut b.drops,
            offset: b.held,
        });
        let client_params = &mut self.params;
        let server_params = &mut server.params;
        progress::scan_server(&mut b.server_scan, &b.sbuf[b.held..], b.p, |f| {
            if let Some(t) = tracking.as_mut().filter(|t| !t.expect.is_empty()) {
                if on_server_frame(f.tag, t.expect, t.server) {
                    let end = t.offset + f.end;
                    if let Some(start) = end.checked_sub(f.len) {
                        t.drops.push(start..end);
                    }
                }
            }
            if f.tag == tag::backend::PARAMETER_STATUS {
                if let Some(Ok(BackendMessage::ParameterStatus { name, value })) =
                    f.body.map(|b| pgtide_protocol::backend::decode(f.tag, b))
                {
                    server_params.set(name, value);
                    client_params.set(name, value);
                }
            }
        })
    }

    /// Reports the 57014s just seen that neither pgtide nor the client caused: the server's
    /// statement_timeout.
    fn count_statement_timeouts(&mut self, b: &mut Period<'_>) {
        for _ in 0..std::mem::take(&mut b.p.canceled) {
            if b.timing.canceller(&self.cancel.slot) == Canceller::Server {
                self.failures.report(
                    Failure::new(
                        self.pool.name(),
                        FailureClass::StatementTimeout,
                        "the server cancelled a statement at its statement_timeout",
                    )
                    .client(self.peer)
                    .server(b.checkout.conn().addr)
                    .code(Some("57014".into())),
                );
            }
        }
    }

    /// Writes the scanned server bytes to the client in one write (without the answers it
    /// must not see), holding back a partial header that may start such an answer. `false`
    /// when the client is gone.
    async fn pass_to_client(&mut self, b: &mut Period<'_>) -> bool {
        let keep = if b.track.is_some() && !b.expect.is_empty() {
            b.server_scan.partial_header_len()
        } else {
            0
        };
        let sbuf = &mut *b.sbuf;
        let send_len = sbuf.len() - keep;
        if send_len > 0 {
            let written = if b.drops.is_empty() {
                self.client.write_all(&sbuf[..send_len]).await
            } else {
                let filtered = without_ranges(&sbuf[..send_len], &b.drops);
                b.drops.clear();
                self.client.write_all(&filtered).await
            };
            if written.is_err() {
                return false;
            }
        }
        b.drops.clear();
        let len = sbuf.len();
        sbuf.copy_within(send_len..len, 0);
        sbuf.truncate(keep);
        b.held = keep;
        Buffers::ready_to_read(sbuf);
        true
    }

    /// Serves one client read: scans (and with tracking rewrites) it and sends it to the
    /// server. `Some` ends the period.
    async fn on_client_read(
        &mut self,
        read: io::Result<usize>,
        b: &mut Period<'_>,
    ) -> Option<Unbind> {
        match read {
            Ok(0) | Err(_) => {
                let at = Boundaries {
                    server: b.server_scan.at_boundary(),
                    client: self.client_scan.at_boundary(),
                };
                return Some(Unbind::ClientGone {
                    reusable: b.p.reusable(at),
                });
            }
            Ok(_) => {}
        }
        let staged = match b.track {
            Some(cap) => self.stage_tracked(b.checkout.conn(), b.cbuf, b.out, b.expect, b.p, cap),
            None => self.scan_client(b.cbuf, b.p).map(|len| Outgoing {
                from_out: false,
                len,
                consumed: b.cbuf.len(),
            }),
        };
        let staged = match staged {
            Ok(o) => o,
            Err(e) => return Some(Unbind::violation(&e)),
        };
        if b.p.pending > 0 {
            b.timing.sent(b.checkout, &mut Now::default());
            if let Some(slow) = &mut self.slow {
                slow.query_sent();
            }
        }
        if let Err(e) = send_client_bytes(b.checkout.conn(), b.cbuf, b.out, staged).await {
            return Some(Unbind::lost(e));
        }
        Buffers::ready_to_read(b.cbuf);
        None
    }

    /// A timeout fired: query_timeout (pgtide cancels the query; the server answers the client
    /// with 57014 and the session goes on) or idle_in_transaction_timeout (the session ends).
    async fn on_deadline(&mut self, b: &mut Period<'_>) -> Option<Unbind> {
        let server = b.checkout.conn();
        if b.p.pending == 0 {
            let limit = b.timing.idle_tx_timeout();
            let message = format!("pgtide [idle_in_transaction_timeout]: closing the connection after {} idle inside a transaction; the transaction was rolled back", pgtide_config::format_duration(limit));
            let refusal = Refusal::new(
                FailureClass::IdleInTransactionTimeout,
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                message,
            )
            .server(server.addr)
            .elapsed(limit);
            return Some(Unbind::Refused(Box::new(refusal)));
        }
        b.timing.cancelling();
        let limit = b.timing.query_timeout();
        let text = format!("pgtide [query_timeout]: the query ran longer than query_timeout ({}); pgtide is cancelling it", pgtide_config::format_duration(limit));
        self.failures.report(
            Failure::new(self.pool.name(), FailureClass::QueryTimeout, &text)
                .client(self.peer)
                .server(server.addr)
                .elapsed(limit),
        );
        if b.server_scan.at_boundary() {
            let mut notice = BytesMut::new();
            encode::notice_response(
                &mut notice,
                pgtide_protocol::Severity::Warning,
                SqlState::QUERY_CANCELED,
                &text,
                None,
                None,
            );
            let _ = self.client.write_all(&notice).await;
        }
        tokio::spawn(send_cancel(server.addr, server.cancel_key));
        None
    }

    /// Rewrites the client's statement names for `server` (complete frames only; the rest waits
    /// in `cbuf`) and scans the result like any client bytes.
    fn stage_tracked(
        &mut self,
        server: &mut ServerConn,
        cbuf: &[u8],
        out: &mut BytesMut,
        expect: &mut Expected,
        p: &mut Progress,
        cap: usize,
    ) -> Result<Outgoing, ProtocolError> {
        let client = self.prepared.get_or_insert_with(Default::default);
        let mut bound = Bound {
            registry: &self.pool.statements,
            server: &mut server.statements,
            cap,
            expect,
            max_len: self.client_scan.max_len(),
        };
        let r = rewrite_client(client, cbuf, out, &mut bound)?;
        let data = if r.in_out {
            &out[..]
        } else {
            &cbuf[..r.consumed]
        };
        let len = self.scan_client(data, p)?;
        Ok(Outgoing {
            from_out: r.in_out,
            len,
            consumed: r.consumed,
        })
    }
}

/// Writes staged client bytes to the server, then drops them from the buffers.
async fn send_client_bytes(
    server: &mut ServerConn,
    cbuf: &mut BytesMut,
    out: &mut BytesMut,
    o: Outgoing,
) -> io::Result<()> {
    let data = if o.from_out {
        &out[..o.len]
    } else {
        &cbuf[..o.len]
    };
    if !data.is_empty() {
        server.stream.write_all(data).await?;
    }
    out.clear();
    drop_front(cbuf, o.consumed);
    Ok(())
}

/// `data` without the byte ranges `drops` (sorted, disjoint): answers the client did not ask for.
fn without_ranges(data: &[u8], drops: &[Range<usize>]) -> BytesMut {
    let mut out = BytesMut::with_capacity(data.len());
    let mut at = 0;
    for r in drops {
        out.extend_from_slice(&data[at..r.start.min(data.len())]);
        at = r.end.min(data.len());
    }
    out.extend_from_slice(&data[at..]);
    out
}
