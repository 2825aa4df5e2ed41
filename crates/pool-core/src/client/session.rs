//! The forwarding loop of one client.
//!
//! Bytes are forwarded as read — one write per read, never per message — while a
//! [`StreamScanner`] per direction tracks message boundaries. The session counts the client's
//! sync points (Query, Sync, FunctionCall) against the server's ReadyForQuery messages, and in
//! transaction and statement mode gives the server back exactly when every sync point has been
//! answered, the last ReadyForQuery said 'I', no extended-protocol message is waiting for a
//! Sync, and both streams sit at a message boundary. Anything less (a client vanishing
//! mid-transaction, a broken stream) closes the server instead: it is never returned in an
//! unknown state.
//!
//! While a client is idle it holds no buffers: its first read is copied into a buffer the size
//! of what arrived, and the transaction then forwards through the buffers its server connection
//! keeps (`server::buffers`), so a transaction allocates no read buffers.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use crate::clock::Instant;

use bytes::BytesMut;
use pgtide_config::{PoolMode, PoolSettings};
use pgtide_protocol::frame::MAX_FRAME_LEN;
use pgtide_protocol::stream::StreamScanner;
use pgtide_protocol::{encode, tag, BackendMessage, ProtocolError, SqlState, TransactionStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::idle::{wait_idle, Woke};
use super::login::ClientSlot;
use super::park::{Parking, PARK_AFTER};
use super::reply::fatal;
use super::slow::SlowLog;
use crate::cancel::{send_cancel, CancelRegistration};
use crate::failure::FailureClass;
use crate::pool::{Checkout, Pool};
use crate::prepared::rewrite::{on_server_frame, rewrite_client, Bound};
use crate::prepared::{ClientStatements, Expected, ServerStatements};
use crate::report::{Failure, Failures};
use crate::server::buffers::{drop_front, Buffers};
use crate::server::{ParamSet, ServerConn, StartupSettings};
use crate::stream::Stream;

/// Settings PostgreSQL 15 reports with ParameterStatus whenever they change.
const REPORTED_PARAMS: &[&str] = &[
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// Where the client and its server stand with respect to the transaction protocol.
#[derive(Debug, Clone, Copy)]
struct Progress {
    /// Sync points sent to the server and not yet answered by ReadyForQuery.
    pending: u32,
    /// Parse/Bind/Execute/Describe/Close sent since the last sync point.
    unsynced: bool,
    /// The last ReadyForQuery's status.
    status: TransactionStatus,
    /// The last server frame seen was ReadyForQuery.
    at_ready: bool,
    /// The client sent Terminate.
    terminated: bool,
    /// An ErrorResponse from the server said it is shutting down.
    server_shutting_down: bool,
    /// Statements the server cancelled at its statement_timeout, not yet counted.
    statement_timeouts: u32,
    /// Syncs sent since the last Execute: if copy data follows, the Execute started a
    /// COPY FROM STDIN and PostgreSQL ignores these Syncs (it does so in copy-in mode), so they
    /// get no ReadyForQuery and must not be waited for.
    syncs_since_execute: u32,
    /// Copy data was seen since the last Execute/Query (the discount above is applied once).
    in_copy: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            pending: 0,
            unsynced: false,
            status: TransactionStatus::Idle,
            at_ready: true,
            terminated: false,
            server_shutting_down: false,
            statement_timeouts: 0,
            syncs_since_execute: 0,
            in_copy: false,
        }
    }

    /// The server can serve another client now.
    fn server_idle(&self) -> bool {
        self.pending == 0
            && !self.unsynced
            && self.at_ready
            && self.status == TransactionStatus::Idle
    }
}

/// How a bound period ended.
enum Unbind {
    /// The transaction is over; release the server and wait for the client's next one.
    Released,
    /// The client left (or broke); release the server when `reusable`, else close it.
    ClientGone { reusable: bool },
    /// The server broke; tell the client and close.
    ServerGone { class: FailureClass, error: String },
    /// The client broke the protocol; tell it and close.
    ClientViolation { code: SqlState, message: String },
    /// A pgtide limit ended the session; tell the client and close the server.
    Limit {
        class: FailureClass,
        code: SqlState,
        message: String,
    },
}

/// What a session's task does when [`Session::run_parkable`] or [`Session::run_unparkable`]
/// returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The session is over.
    Done,
    /// The client is idle: park the session (`client/park.rs`) until it sends something.
    Park,
    /// Whether the session can park changed (a reload turned `client_idle_timeout` on or off):
    /// run it the other way ([`Session::run_parkable`], [`Session::run_unparkable`]).
    Switch,
}

/// What a session waits on between transactions besides its client, for as long as it stays
/// in one task: kept between idle waits so that a wait registers nothing new, and dropped with
/// the task (they hold its waker) when the session parks.
#[derive(Default)]
pub(super) struct TaskWaits {
    /// Fires every [`PARK_AFTER`]; when it fires and no message came since it was armed, the
    /// session parks. Armed once per period rather than per transaction: no clock read or
    /// timer move on the hot path.
    park_timer: Option<Pin<Box<Sleep>>>,
    /// A message arrived since the park timer was last armed.
    spoke: bool,
    /// Resolves when pgtide starts shutting down.
    shutdown: Option<ShutdownWait>,
}

/// What the idle part of the session loop hands on.
enum Idle {
    /// Client bytes that need a server.
    Work {
        cbuf: BytesMut,
        progress: Progress,
        track: Option<usize>,
    },
    /// Nothing for a server yet (or the park period was re-armed): wait again.
    Again,
    /// Stop running, for this reason.
    Stop(Next),
}

/// One client's session after login.
pub struct Session {
    pub(super) failures: Arc<Failures>,
    pub(super) pool: Arc<Pool>,
    /// The pool's settings as of the last transaction, and their version
    /// ([`Pool::settings_since`]): re-read only after a change.
    pub(super) settings: Arc<PoolSettings>,
    pub(super) settings_seen: u64,
    pub(super) mode: PoolMode,
    /// Session mode: the client's startup settings, which its server must have been started
    /// with (`None` when it sent none, or in the other modes).
    pub(super) startup: Option<Arc<StartupSettings>>,
    pub(super) client: Stream,
    pub(super) peer: SocketAddr,
    /// The settings this client's session has, re-applied on each server it lands on.
    pub(super) params: ParamSet,
    pub(super) cancel: CancelRegistration,
    /// Delimits client messages; its limit is `pgtide.max_message_size`.
    pub(super) client_scan: StreamScanner,
    pub(super) shutdown: watch::Receiver<bool>,
    /// Slow query bookkeeping, present while `slow_query_threshold` is on (boxed: most
    /// sessions never have it).
    pub(super) slow: Option<Box<SlowLog>>,
    /// `log.slow_query_sql_chars` and `log.slow_query_redact` when the client logged in.
    pub(super) slow_format: (u32, bool),
    /// The client's named prepared statements, once it used one in transaction/statement mode.
    pub(super) prepared: Option<Box<ClientStatements>>,
    /// Where the session goes while its client is quiet.
    pub(super) parking: Parking,
    /// Park at the next idle point without waiting (set at login).
    pub(super) park_now: bool,
    /// This client counted in `Shared::clients` until the session is dropped.
    pub(super) _slot: ClientSlot,
}

/// Statement tracking while bound: what the server answers must be matched against.
struct Tracking<'a> {
    expect: &'a mut Expected,
    server: &'a mut ServerStatements,
    /// Byte ranges (in the server buffer) of answers the client must not see.
    drops: &'a mut Vec<std::ops::Range<usize>>,
    /// Where the bytes being scanned start in the server buffer.
    offset: usize,
}

impl Session {
    /// Whether this session parks when its client is quiet: plain TCP sessions without an idle
    /// timeout of their own (current settings).
    pub(super) fn parkable(&self) -> bool {
        self.settings.client_idle_timeout.non_zero().is_none() && !self.client.is_tls()
    }

    /// Runs a session that parks when quiet until it ends ([`Next::Done`]), parks
    /// ([`Next::Park`]) or can no longer park ([`Next::Switch`]). Each transaction runs inline:
    /// such a session is in a task only while it is busy, and a box per transaction cost a
    /// 1.3 KB malloc and free. The caller boxes this future once per stay in a task.
    pub(super) async fn run_parkable(&mut self, waits: &mut TaskWaits) -> Next {
        loop {
            match self.idle(true, waits).await {
                Idle::Work {
                    cbuf,
                    mut progress,
                    track,
                } => {
                    if !self.transaction(cbuf, &mut progress, track).await {
                        return Next::Done;
                    }
                }
                Idle::Again => {}
                Idle::Stop(next) => return next,
            }
        }
    }

    /// Runs a session that never parks (TLS, or `client_idle_timeout` on), which stays in its
    /// task while idle: each transaction is boxed, so that the idle task holds only the wait.
    pub(super) async fn run_unparkable(&mut self, waits: &mut TaskWaits) -> Next {
        loop {
            match self.idle(false, waits).await {
                Idle::Work {
                    cbuf,
                    mut progress,
                    track,
                } => {
                    if !Box::pin(self.transaction(cbuf, &mut progress, track)).await {
                        return Next::Done;
                    }
                }
                Idle::Again => {}
                Idle::Stop(next) => return next,
            }
        }
    }

    /// The idle part of the session loop: waits for the client's next bytes (no server, no
    /// buffers) and prepares them for a transaction.
    async fn idle(&mut self, parking: bool, waits: &mut TaskWaits) -> Idle {
        let mut cbuf = BytesMut::new();
        let mut progress = Progress::new();
        self.refresh_settings();
        let idle_limit = self.settings.client_idle_timeout.non_zero();
        if self.parkable() != parking {
            return Idle::Stop(Next::Switch);
        }
        // A client whose first query is already here is served at once instead of taking a
        // trip through the hub (connect-per-transaction clients).
        if parking && std::mem::take(&mut self.park_now) && !self.client_has_bytes() {
            return Idle::Stop(Next::Park);
        }
        let mut idle_timer;
        let timer = match idle_limit {
            Some(limit) => {
                idle_timer = Box::pin(tokio::time::sleep(limit));
                Some((&mut idle_timer, Woke::IdleTimeout))
            }
            None if parking => {
                let t = waits
                    .park_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(PARK_AFTER)));
                Some((t, Woke::Park))
            }
            None => None,
        };
        let shutdown = &self.shutdown;
        let shutdown = waits
            .shutdown
            .get_or_insert_with(|| shutdown_wait(shutdown));
        match wait_idle(&mut self.client, &mut cbuf, shutdown.as_mut(), timer).await {
            Woke::Bytes => waits.spoke = true,
            Woke::Gone => return Idle::Stop(Next::Done),
            Woke::Park if std::mem::take(&mut waits.spoke) => {
                // Served during the period that just ended: quiet for less than PARK_AFTER.
                // Arm the next period.
                if let Some(t) = waits.park_timer.as_mut() {
                    t.as_mut().reset(tokio::time::Instant::now() + PARK_AFTER);
                }
                return Idle::Again;
            }
            Woke::Park => return Idle::Stop(Next::Park),
            Woke::IdleTimeout => {
                let limit = idle_limit.unwrap_or_default();
                Box::pin(self.idle_timeout(limit)).await;
                return Idle::Stop(Next::Done);
            }
            Woke::Shutdown => {
                Box::pin(fatal(
                    &mut self.client,
                    SqlState::ADMIN_SHUTDOWN,
                    "pgtide is shutting down",
                    Some("Reconnect to another pgtide instance or retry shortly."),
                ))
                .await;
                return Idle::Stop(Next::Done);
            }
        }
        // Limits changed live (a reload while this client was idle) apply to the transaction
        // that starts now.
        self.refresh_settings();
        let settings = &self.settings;
        // Named statements are tracked where a client can change servers between transactions.
        let track = (self.mode != PoolMode::Session && settings.max_prepared_statements > 0)
            .then_some(settings.max_prepared_statements as usize);
        match settings.slow_query_threshold.non_zero() {
            Some(threshold) => {
                let (chars, redact) = self.slow_format;
                self.slow
                    .get_or_insert_with(|| {
                        Box::new(SlowLog::new(threshold, chars as usize, redact))
                    })
                    .threshold = threshold;
            }
            None => self.slow = None,
        }
        if let Some(slow) = &mut self.slow {
            slow.transaction_starts(Instant::now());
        }
        if track.is_some() {
            // Scanned after rewriting, once bound; a lone Terminate needs no server.
            if cbuf.first() == Some(&tag::frontend::TERMINATE) {
                return Idle::Stop(Next::Done);
            }
        } else {
            match self.scan_client(&cbuf, &mut progress) {
                Ok(send) => cbuf.truncate(send),
                Err(e) => {
                    Box::pin(self.protocol_violation(e)).await;
                    return Idle::Stop(Next::Done);
                }
            }
            if cbuf.is_empty() {
                // Only Terminate (or nothing complete yet that needs a server).
                if progress.terminated {
                    return Idle::Stop(Next::Done);
                }
                return Idle::Again;
            }
        }
        Idle::Work {
            cbuf,
            progress,
            track,
        }
    }

    /// Runs one transaction (or, in session mode, the rest of the session) on a server from
    /// the pool; `false` when the session is over.
    async fn transaction(
        &mut self,
        cbuf: BytesMut,
        progress: &mut Progress,
        track: Option<usize>,
    ) -> bool {
        // A warm server at hand needs no future. The queued wait runs inline: this future lives
        // in a box made once per stay in a task (parkable sessions) or once per transaction
        // (the others), never in an idle task, and with many clients queued a box per wait
        // was a malloc and free on most transactions (about 300 instructions at 200 clients).
        let want = self.startup.as_ref();
        let acquired = match self.pool.try_acquire_for(want) {
            Some(c) => Ok(c),
            None => loop {
                // A CancelRequest for a queued client aborts its wait (client/cancelled.rs).
                let wait = self.pool.acquire_for(want);
                match self.cancel.slot.unless_cancelled(wait).await {
                    Some(r) => break r,
                    None => {
                        if let Some(end) = super::cancelled::first_sync_point_end(&cbuf) {
                            return Box::pin(self.after_cancel(cbuf, end, progress, track)).await;
                        }
                        // Nothing that can be answered for the server: keep waiting.
                    }
                }
            },
        };
        let mut checkout = match acquired {
            Ok(c) => c,
            Err(e) => {
                let message = e.to_string();
                self.failures
                    .report(e.failure(self.pool.name(), &message).client(self.peer));
                fatal(&mut self.client, e.sqlstate(), &message, Some(e.hint())).await;
                return false;
            }
        };
        if let Some(slow) = &mut self.slow {
            slow.waited = slow.tx_started.map(|t| t.elapsed()).unwrap_or_default();
        }
        let server = checkout.conn();
        self.cancel.slot.set(Some((server.addr, server.cancel_key)));
        // The settings check is synchronous; only a needed `SET` round trip is awaited (boxed,
        // as the rare paths below, to keep this future small).
        let synced = match ParamSet::sync_query(&self.params, &server.params) {
            None => Ok(()),
            Some(sql) => Box::pin(self.sync_params(server, sql)).await,
        };
        // The answers to match are kept with the client between transactions, so the queue's
        // allocation is reused.
        let mut expect = self
            .prepared
            .as_mut()
            .map(|c| std::mem::take(&mut c.expect))
            .unwrap_or_default();
        let outcome = match synced {
            Ok(()) => {
                self.bound(checkout.conn(), cbuf, progress, track, &mut expect)
                    .await
            }
            Err(e) => Unbind::ServerGone {
                class: FailureClass::ServerConnLost,
                error: e,
            },
        };
        expect.clear();
        if let Some(c) = self.prepared.as_mut() {
            c.expect = expect;
        }
        self.cancel.slot.set(None);
        if let Unbind::Released = outcome {
            self.pool.release(checkout, true);
            if let Some(slow) = &mut self.slow {
                slow.transaction_done(&self.failures, self.pool.name(), self.peer);
            }
            return true;
        }
        Box::pin(self.end(checkout, outcome, progress.server_shutting_down)).await;
        false
    }

    /// Answers a cancelled first sync point, then runs what the client pipelined after it;
    /// `false` when the session is over.
    async fn after_cancel(
        &mut self,
        cbuf: BytesMut,
        end: usize,
        progress: &mut Progress,
        track: Option<usize>,
    ) -> bool {
        let Some(rest) = self.answer_cancelled(cbuf, end).await else {
            return false;
        };
        progress.pending = progress.pending.saturating_sub(1);
        if rest.is_empty() {
            return !progress.terminated;
        }
        Box::pin(self.transaction(rest, progress, track)).await
    }

    /// Whether the client's socket is readable right now (bytes or EOF waiting), without
    /// waiting. The no-op waker left registered is replaced by whoever waits next.
    fn client_has_bytes(&self) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        self.client.tcp().poll_read_ready(&mut cx).is_ready()
    }

    /// Picks up the pool's settings when they changed since this session last read them (one
    /// atomic load when they did not).
    pub(super) fn refresh_settings(&mut self) {
        if let Some((settings, version)) = self.pool.settings_since(self.settings_seen) {
            self.settings = settings;
            self.settings_seen = version;
        }
    }

    /// Ends the session after a bound period that did not simply release its server: the
    /// server is released or closed, the failure reported, the client told why.
    async fn end(&mut self, mut checkout: Checkout, outcome: Unbind, server_shutting_down: bool) {
        match outcome {
            Unbind::Released => self.pool.release(checkout, true),
            Unbind::ClientGone { reusable } => self.finish(checkout, reusable).await,
            Unbind::ServerGone { class, error } => {
                let class = if server_shutting_down {
                    FailureClass::ServerShutdown
                } else {
                    class
                };
                let message = format!("pgtide [{class}]: server connection lost: {error}");
                self.failures.report(
                    Failure::new(self.pool.name(), class, &message)
                        .client(self.peer)
                        .server(checkout.conn().addr),
                );
                drop(checkout);
                fatal(
                    &mut self.client,
                    SqlState::CONNECTION_FAILURE,
                    &message,
                    Some("The statement may or may not have run; pgtide does not retry it. Reconnect and check."),
                )
                .await;
            }
            Unbind::Limit {
                class,
                code,
                message,
            } => {
                self.failures.report(
                    Failure::new(self.pool.name(), class, &message)
                        .client(self.peer)
                        .server(checkout.conn().addr),
                );
                drop(checkout);
                fatal(&mut self.client, code, &message, None).await;
            }
            Unbind::ClientViolation { code, message } => {
                drop(checkout);
                self.failures.report(
                    Failure::new(self.pool.name(), FailureClass::ProtocolViolation, &message)
                        .client(self.peer)
                        .code(Some(code.as_str().to_owned())),
                );
                fatal(&mut self.client, code, &message, None).await;
            }
        }
    }

    /// Forwards between the client and `server` until the server can be released, through the
    /// server connection's buffers; `first` holds the client bytes that started the transaction.
    async fn bound(
        &mut self,
        server: &mut ServerConn,
        first: BytesMut,
        p: &mut Progress,
        track: Option<usize>,
        expect: &mut Expected,
    ) -> Unbind {
        let mut bufs = std::mem::take(&mut server.buffers);
        bufs.client.extend_from_slice(&first);
        drop(first);
        let outcome = self.forward(server, &mut bufs, p, track, expect).await;
        bufs.recycle();
        server.buffers = bufs;
        outcome
    }

    /// The body of [`Session::bound`].
    async fn forward(
        &mut self,
        server: &mut ServerConn,
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
        let mut drops = Vec::new();
        // Server bytes held back (a partial header of an answer that may have to be dropped).
        let mut held = 0;
        // The first bytes were scanned before the checkout unless statements are tracked.
        let first = match track {
            Some(cap) => self.stage_tracked(server, cbuf, out, expect, p, cap),
            None => Ok(Outgoing {
                from_out: false,
                len: cbuf.len(),
                consumed: cbuf.len(),
            }),
        };
        let first = match first {
            Ok(o) => o,
            Err(e) => {
                return Unbind::ClientViolation {
                    code: e.sqlstate(),
                    message: e.to_string(),
                }
            }
        };
        if let Err(e) = send_client_bytes(server, cbuf, out, first).await {
            return Unbind::ServerGone {
                class: FailureClass::ServerConnLost,
                error: e.to_string(),
            };
        }
        Buffers::ready_to_read(cbuf);
        Buffers::ready_to_read(sbuf);
        let mut server_scan = StreamScanner::new(MAX_FRAME_LEN);
        // As of when the transaction started (`run` refreshes them when the client's bytes
        // arrive).
        let query_timeout = self.settings.query_timeout.non_zero();
        let idle_tx_timeout = self.settings.idle_in_transaction_timeout.non_zero();
        // When the oldest unanswered sync point was sent, for query_timeout.
        // Clocks are read only for the timeouts that are on: the hot path pays nothing otherwise.
        let mut query_started = (p.pending > 0 && query_timeout.is_some()).then(Instant::now);
        let mut cancel_sent = false;
        // When the last ReadyForQuery arrived, for idle_in_transaction_timeout.
        let mut last_ready = idle_tx_timeout.map(|_| Instant::now());
        // One timer for the whole transaction, made when a timeout first applies (none of them
        // is on by default), moved when the deadline moves, polled only while a timeout applies.
        let mut timer = std::pin::pin!(None::<Sleep>);
        loop {
            let deadline = if p.pending > 0 {
                query_timeout
                    .filter(|_| !cancel_sent)
                    .zip(query_started)
                    .map(|(t, started)| started + t)
            } else if p.at_ready && p.status != TransactionStatus::Idle {
                idle_tx_timeout.zip(last_ready).map(|(t, at)| at + t)
            } else {
                None
            };
            if let Some(at) = deadline {
                match timer.as_mut().as_pin_mut() {
                    Some(t) if t.deadline() == at => {}
                    Some(t) => t.reset(at),
                    None => timer.set(Some(tokio::time::sleep_until(at))),
                }
            }
            if p.terminated {
                // The client is gone: nobody will read the answers still due, and in COPY FROM
                // STDIN (or after an error awaiting Sync) none would ever come. The server goes
                // back only if it is idle right now; otherwise it is closed at once, as on a
                // plain socket close, and the backend ends its COPY and transaction with it.
                return Unbind::ClientGone {
                    reusable: p.server_idle() && server_scan.at_boundary(),
                };
            }
            tokio::select! {
                biased;
                r = server.stream.read_buf(&mut *sbuf) => {
                    match r {
                        Ok(0) => return Unbind::ServerGone { class: FailureClass::ServerConnLost, error: "server closed the connection".into() },
                        Ok(_) => {}
                        Err(e) => return Unbind::ServerGone { class: FailureClass::ServerConnLost, error: e.to_string() },
                    }
                    let tracking = track.is_some().then_some(Tracking {
                        expect: &mut *expect,
                        server: &mut server.statements,
                        drops: &mut drops,
                        offset: held,
                    });
                    let scanned = scan_server(&mut server_scan, &sbuf[held..], p, &mut self.params, &mut server.params, tracking);
                    if p.statement_timeouts > 0 {
                        for _ in 0..std::mem::take(&mut p.statement_timeouts) {
                            self.failures.report(
                                Failure::new(self.pool.name(), FailureClass::StatementTimeout, "the server cancelled a statement at its statement_timeout")
                                    .client(self.peer)
                                    .server(server.addr)
                                    .code(Some("57014".into())),
                            );
                        }
                    }
                    if p.pending == 0 {
                        if let Some(slow) = &mut self.slow {
                            slow.query_done(&self.failures, self.pool.name(), self.peer);
                        }
                        query_started = None;
                        cancel_sent = false;
                        if idle_tx_timeout.is_some() {
                            last_ready = Some(Instant::now());
                        }
                    }
                    if let Err(e) = scanned {
                        return Unbind::ServerGone { class: FailureClass::ProtocolViolation, error: e.to_string() };
                    }
                    let keep = if track.is_some() && !expect.is_empty() { server_scan.partial_header_len() } else { 0 };
                    let send_len = sbuf.len() - keep;
                    if send_len > 0 {
                        let written = if drops.is_empty() {
                            self.client.write_all(&sbuf[..send_len]).await
                        } else {
                            let filtered = without_ranges(&sbuf[..send_len], &drops);
                            drops.clear();
                            self.client.write_all(&filtered).await
                        };
                        if written.is_err() {
                            return Unbind::ClientGone { reusable: false };
                        }
                    }
                    drops.clear();
                    let len = sbuf.len();
                    sbuf.copy_within(send_len..len, 0);
                    sbuf.truncate(keep);
                    held = keep;
                    Buffers::ready_to_read(sbuf);
                    // `cbuf` must be empty too: with statement tracking, an incomplete client
                    // frame waits there unscanned, and it belongs to this server's stream.
                    if p.pending == 0 && p.at_ready && server_scan.at_boundary() && self.client_scan.at_boundary() && cbuf.is_empty() {
                        if self.mode == PoolMode::Statement && p.status != TransactionStatus::Idle {
                            return Unbind::ClientViolation {
                                code: SqlState::FEATURE_NOT_SUPPORTED,
                                message: "transaction blocks are not allowed in statement pooling mode".into(),
                            };
                        }
                        if self.mode != PoolMode::Session && p.server_idle() {
                            return Unbind::Released;
                        }
                    }
                }
                r = self.client.read_buf(&mut *cbuf) => {
                    match r {
                        Ok(0) | Err(_) => {
                            let reusable = p.server_idle() && server_scan.at_boundary() && self.client_scan.at_boundary();
                            return Unbind::ClientGone { reusable };
                        }
                        Ok(_) => {}
                    }
                    let staged = match track {
                        Some(cap) => self.stage_tracked(server, cbuf, out, expect, p, cap),
                        None => self.scan_client(cbuf, p).map(|len| Outgoing { from_out: false, len, consumed: cbuf.len() }),
                    };
                    let staged = match staged {
                        Ok(o) => o,
                        Err(e) => return Unbind::ClientViolation { code: e.sqlstate(), message: e.to_string() },
                    };
                    if p.pending > 0 {
                        if query_started.is_none() && query_timeout.is_some() {
                            query_started = Some(Instant::now());
                        }
                        if let Some(slow) = &mut self.slow {
                            slow.query_sent();
                        }
                    }
                    if let Err(e) = send_client_bytes(server, cbuf, out, staged).await {
                        return Unbind::ServerGone { class: FailureClass::ServerConnLost, error: e.to_string() };
                    }
                    Buffers::ready_to_read(cbuf);
                }
                _ = poll_fn(|cx| timer.as_mut().as_pin_mut().map_or(Poll::Pending, |t| t.poll(cx))), if deadline.is_some() => {
                    if p.pending > 0 {
                        // query_timeout: pgtide cancels; the server answers the client with 57014.
                        cancel_sent = true;
                        let limit = query_timeout.unwrap_or_default();
                        let text = format!("pgtide [query_timeout]: the query ran longer than query_timeout ({}); pgtide is cancelling it", pgtide_config::format_duration(limit));
                        self.failures.report(
                            Failure::new(self.pool.name(), FailureClass::QueryTimeout, &text)
                                .client(self.peer)
                                .server(server.addr)
                                .elapsed(limit),
                        );
                        if server_scan.at_boundary() {
                            let mut notice = BytesMut::new();
                            encode::notice_response(&mut notice, pgtide_protocol::Severity::Warning, SqlState::QUERY_CANCELED, &text, None, None);
                            let _ = self.client.write_all(&notice).await;
                        }
                        tokio::spawn(send_cancel(server.addr, server.cancel_key));
                    } else {
                        let limit = idle_tx_timeout.unwrap_or_default();
                        return Unbind::Limit {
                            class: FailureClass::IdleInTransactionTimeout,
                            code: SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                            message: format!("pgtide [idle_in_transaction_timeout]: closing the connection after {} idle inside a transaction; the transaction was rolled back", pgtide_config::format_duration(limit)),
                        };
                    }
                }
            }
        }
    }

    /// Scans client bytes: counts sync points, notes unsynced extended-protocol messages, and
    /// cuts the buffer at Terminate (which pgtide handles itself: the server is not the
    /// client's to close).
    /// Returns how many of the bytes go to the server.
    fn scan_client(&mut self, data: &[u8], p: &mut Progress) -> Result<usize, ProtocolError> {
        let mut cut = None;
        let slow = &mut self.slow;
        let capture_sql = slow.is_some();
        self.client_scan.feed(
            data,
            |t| capture_sql && (t == tag::frontend::QUERY || t == tag::frontend::PARSE),
            |f| {
                if cut.is_some() {
                    return;
                }
                if let (Some(slow), None) = (slow.as_mut(), f.body) {
                    if matches!(f.tag, tag::frontend::QUERY | tag::frontend::PARSE) {
                        slow.saw_sql(b"(statement text too long to capture)");
                    }
                }
                if let (Some(slow), Some(body)) = (slow.as_mut(), f.body) {
                    match f.tag {
                        tag::frontend::QUERY => slow.saw_sql(body),
                        tag::frontend::PARSE => {
                            // Statement name, then the SQL.
                            let name_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                            slow.saw_sql(body.get(name_end + 1..).unwrap_or_default());
                        }
                        _ => {}
                    }
                }
                match f.tag {
                    tag::frontend::SYNC => {
                        p.pending += 1;
                        p.syncs_since_execute += 1;
                        p.unsynced = false;
                        p.at_ready = false;
                    }
                    tag::frontend::QUERY | tag::frontend::FUNCTION_CALL => {
                        p.pending += 1;
                        p.syncs_since_execute = 0;
                        p.in_copy = false;
                        p.unsynced = false;
                        p.at_ready = false;
                    }
                    tag::frontend::EXECUTE => {
                        p.syncs_since_execute = 0;
                        p.in_copy = false;
                        p.unsynced = true;
                        p.at_ready = false;
                    }
                    tag::frontend::PARSE
                    | tag::frontend::BIND
                    | tag::frontend::DESCRIBE
                    | tag::frontend::CLOSE => {
                        p.unsynced = true;
                        p.at_ready = false;
                    }
                    tag::frontend::COPY_DATA
                    | tag::frontend::COPY_DONE
                    | tag::frontend::COPY_FAIL
                        if !p.in_copy =>
                    {
                        // The Syncs between the Execute that started this COPY FROM STDIN and
                        // its data reached the server in copy-in mode and were ignored.
                        p.in_copy = true;
                        p.pending -= p.syncs_since_execute.min(p.pending);
                        p.syncs_since_execute = 0;
                    }
                    tag::frontend::TERMINATE => cut = Some(f.end - f.len),
                    _ => {}
                }
            },
        )?;
        if cut.is_some() {
            p.terminated = true;
        }
        Ok(cut.unwrap_or(data.len()))
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

    /// Brings the server's settings to the client's with `sql` (from [`ParamSet::sync_query`]),
    /// one `SET …; SET …` round trip.
    async fn sync_params(&mut self, server: &mut ServerConn, sql: String) -> Result<(), String> {
        let params = &mut self.params;
        // Keep the server's spelling ("UTC" for "utc") so the next comparison agrees.
        let error = server
            .run_own_query(&sql, |name, value| params.set(name, value))
            .await?;
        if let Some(fields) = error {
            tracing::warn!(pool = %self.pool.name(), client = %self.peer, error = %fields, "re-applying client settings failed");
        }
        // Record what was set even when the server does not report it, and forget what was
        // reset to the server's default.
        for (name, value) in self.params.iter() {
            if server.params.get(name) != Some(value) {
                server.params.set(name, value);
            }
        }
        let reset: Vec<String> = server
            .params
            .iter()
            .filter(|(name, _)| self.params.get(name).is_none())
            .map(|(name, _)| name.to_owned())
            .collect();
        for name in reset {
            server.params.forget_own(&name);
        }
        Ok(())
    }

    /// Ends a session: the server goes back (after the reset query in session mode) or is
    /// closed.
    async fn finish(&mut self, mut checkout: Checkout, reusable: bool) {
        if !reusable {
            drop(checkout);
            return;
        }
        if self.mode == PoolMode::Session {
            let reset = self.pool.settings().reset_query.clone();
            if !reset.trim().is_empty() {
                let ok = reset_server(checkout.conn(), &reset).await;
                if !ok {
                    drop(checkout);
                    return;
                }
            }
        }
        self.pool.release(checkout, true);
    }

    async fn idle_timeout(&mut self, limit: Duration) {
        let message = format!(
            "pgtide [client_idle_timeout]: closing the connection after {} idle (client_idle_timeout)",
            pgtide_config::format_duration(limit)
        );
        self.failures.report(
            Failure::new(self.pool.name(), FailureClass::ClientIdleTimeout, &message)
                .client(self.peer)
                .elapsed(limit),
        );
        fatal(
            &mut self.client,
            SqlState::IDLE_SESSION_TIMEOUT,
            &message,
            None,
        )
        .await;
    }

    async fn protocol_violation(&mut self, e: ProtocolError) {
        let message = e.to_string();
        self.failures.report(
            Failure::new(self.pool.name(), FailureClass::ProtocolViolation, &message)
                .client(self.peer)
                .code(Some(e.sqlstate().as_str().to_owned())),
        );
        fatal(&mut self.client, e.sqlstate(), &message, None).await;
    }
}

/// Client bytes ready for the server after a read.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    /// They are in the rewrite buffer, not the client buffer.
    from_out: bool,
    /// How many to send (fewer than staged when the client sent Terminate).
    len: usize,
    /// Client buffer bytes dealt with; the rest is an incomplete frame kept for the next read.
    consumed: usize,
}

/// Writes staged client bytes to the server, then drops them from the buffers.
async fn send_client_bytes(
    server: &mut ServerConn,
    cbuf: &mut BytesMut,
    out: &mut BytesMut,
    o: Outgoing,
) -> std::io::Result<()> {
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

/// Scans server bytes: ReadyForQuery answers a sync point; ParameterStatus updates both the
/// client's and the server's view of the session.
fn scan_server(
    scan: &mut StreamScanner,
    data: &[u8],
    p: &mut Progress,
    client_params: &mut ParamSet,
    server_params: &mut ParamSet,
    mut tracking: Option<Tracking<'_>>,
) -> Result<(), ProtocolError> {
    scan.feed(
        data,
        |t| {
            matches!(
                t,
                tag::backend::READY_FOR_QUERY
                    | tag::backend::PARAMETER_STATUS
                    | tag::backend::ERROR_RESPONSE
            )
        },
        |f| {
            if let Some(t) = tracking.as_mut().filter(|t| !t.expect.is_empty()) {
                if on_server_frame(f.tag, t.expect, t.server) {
                    let end = t.offset + f.end;
                    if let Some(start) = end.checked_sub(f.len) {
                        t.drops.push(start..end);
                    }
                }
            }
            match f.tag {
                tag::backend::READY_FOR_QUERY => {
                    p.pending = p.pending.saturating_sub(1);
                    if let Some(status) = f
                        .body
                        .and_then(|b| b.first())
                        .and_then(|b| TransactionStatus::from_byte(*b))
                    {
                        p.status = status;
                    }
                    p.at_ready = true;
                }
                tag::backend::PARAMETER_STATUS => {
                    p.at_ready = false;
                    if let Some(Ok(BackendMessage::ParameterStatus { name, value })) =
                        f.body.map(|b| pgtide_protocol::backend::decode(f.tag, b))
                    {
                        server_params.set(name, value);
                        client_params.set(name, value);
                    }
                }
                tag::backend::ERROR_RESPONSE => {
                    p.at_ready = false;
                    if let Some(Ok(BackendMessage::ErrorResponse(fields))) =
                        f.body.map(|b| pgtide_protocol::backend::decode(f.tag, b))
                    {
                        if fields
                            .code
                            .is_some_and(|c| matches!(c.as_str(), "57P01" | "57P02" | "57P03"))
                        {
                            p.server_shutting_down = true;
                        }
                        let statement_timeout = fields.code.is_some_and(|c| c.as_str() == "57014")
                            && fields
                                .message
                                .as_deref()
                                .is_some_and(|m| m.contains("statement timeout"));
                        if statement_timeout {
                            p.statement_timeouts += 1;
                        }
                    }
                }
                _ => p.at_ready = false,
            }
        },
    )
}

/// `data` without the byte ranges `drops` (sorted, disjoint): answers the client did not ask for.
fn without_ranges(data: &[u8], drops: &[std::ops::Range<usize>]) -> BytesMut {
    let mut out = BytesMut::with_capacity(data.len());
    let mut at = 0;
    for r in drops {
        out.extend_from_slice(&data[at..r.start.min(data.len())]);
        at = r.end.min(data.len());
    }
    out.extend_from_slice(&data[at..]);
    out
}

/// Runs the reset query (session mode) and reports whether the server ended clean and idle.
async fn reset_server(server: &mut ServerConn, sql: &str) -> bool {
    let clean = matches!(server.run_own_query(sql, |_, _| {}).await, Ok(None));
    // The reset may have deallocated every statement (DISCARD ALL); never assume one survived.
    server.statements.clear();
    // Settings pgtide SET that the server does not report are gone after a reset; forget them
    // so the next client's values are applied again.
    server
        .params
        .retain(|name| REPORTED_PARAMS.iter().any(|r| r.eq_ignore_ascii_case(name)));
    // A server started with a client's settings is back at them (they are its defaults).
    if let Some(startup) = server.startup.clone() {
        for (name, value) in startup.iter() {
            if server.params.get(name).is_none() {
                server.params.set(name, value);
            }
        }
    }
    clean
}

/// What an idle session polls to learn that pgtide is shutting down.
pub(super) type ShutdownWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A [`ShutdownWait`] on its own handle of `shutdown` (it resolves at once if the shutdown
/// started before it was made).
fn shutdown_wait(shutdown: &watch::Receiver<bool>) -> ShutdownWait {
    let mut rx = shutdown.clone();
    Box::pin(async move {
        let _ = rx.changed().await;
    })
}
