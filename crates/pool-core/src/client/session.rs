//! One client's session after login: the loop between its idle waits and its transactions.
//!
//! While a client is idle it holds no buffers and no server: its first read is copied into a
//! buffer the size of what arrived, scanned, and the transaction then takes a server from the
//! pool and forwards through the buffers that server connection keeps (`client/bound.rs`), until
//! the release rule (`client/progress.rs`) gives the server back or the session ends
//! (`client/ending.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::clock::Instant;

use bytes::BytesMut;
use pgtide_config::{PoolMode, PoolSettings};
use pgtide_protocol::stream::StreamScanner;
use pgtide_protocol::{tag, ProtocolError, SqlState};
use tokio::sync::watch;
use tokio::time::Sleep;

use super::ending::Unbind;
use super::idle::{wait_idle, Woke};
use super::login::ClientSlot;
use super::park::{Parking, PARK_AFTER};
use super::progress::{self, Progress};
use super::refusal::{refuse, Refusal};
use super::reply::fatal;
use super::slow::SlowLog;
use crate::cancel::CancelRegistration;
use crate::pool::Pool;
use crate::prepared::ClientStatements;
use crate::report::Failures;
use crate::server::{ParamSet, ServerConn, StartupSettings};
use crate::stream::Stream;

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
        self.refresh_settings();
        if self.parkable() != parking {
            return Idle::Stop(Next::Switch);
        }
        // A client whose first query is already here is served at once instead of taking a
        // trip through the hub (connect-per-transaction clients).
        if parking && std::mem::take(&mut self.park_now) && !self.client_has_bytes() {
            return Idle::Stop(Next::Park);
        }
        let idle_limit = self.settings.client_idle_timeout.non_zero();
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
        match self.prepare(cbuf) {
            Ok(idle) => idle,
            Err(e) => {
                Box::pin(self.protocol_violation(e)).await;
                Idle::Stop(Next::Done)
            }
        }
    }

    /// Readies the client bytes that ended an idle wait for a transaction: the settings as of
    /// now, the slow query log, and (unless statements are tracked, which scans after
    /// rewriting) the release rule's first look at them.
    #[inline]
    fn prepare(&mut self, mut cbuf: BytesMut) -> Result<Idle, ProtocolError> {
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
        let mut progress = Progress::new();
        if track.is_some() {
            // Scanned after rewriting, once bound; a lone Terminate needs no server.
            if cbuf.first() == Some(&tag::frontend::TERMINATE) {
                return Ok(Idle::Stop(Next::Done));
            }
        } else {
            let send = self.scan_client(&cbuf, &mut progress)?;
            cbuf.truncate(send);
            if cbuf.is_empty() {
                // Only Terminate (or nothing complete yet that needs a server).
                if progress.terminated {
                    return Ok(Idle::Stop(Next::Done));
                }
                return Ok(Idle::Again);
            }
        }
        Ok(Idle::Work {
            cbuf,
            progress,
            track,
        })
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
                let refusal = Refusal::acquire(&e);
                let pool = self.pool.name();
                refuse(&mut self.client, &self.failures, pool, self.peer, &refusal).await;
                return false;
            }
        };
        if let Some(slow) = &mut self.slow {
            slow.waited = slow.tx_started.map(|t| t.elapsed()).unwrap_or_default();
        }
        // Serve the client on it: point its cancels there, bring the server's settings to the
        // client's, and forward until the period ends. Written out here rather than in its own
        // async fn: one future level fewer to poll on every wake-up of a transaction (a
        // separate `serve` cost about 250 instructions per transaction, benches/instructions.sh).
        let server = checkout.conn();
        self.cancel.slot.set(Some((server.addr, server.cancel_key)));
        // The settings check is synchronous; only a needed `SET` round trip is awaited (boxed,
        // as the rare paths, to keep this future small).
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
                self.bound(&mut checkout, cbuf, progress, track, &mut expect)
                    .await
            }
            Err(e) => Unbind::lost(e),
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

    /// Scans client bytes into the release rule (`client/progress.rs`), noting each statement
    /// for the slow query log when it is on. Returns how many of the bytes go to the server
    /// (Terminate and what follows it do not: the server is not the client's to close).
    pub(super) fn scan_client(
        &mut self,
        data: &[u8],
        p: &mut Progress,
    ) -> Result<usize, ProtocolError> {
        let slow = &mut self.slow;
        let capture_sql = slow.is_some();
        progress::scan_client(&mut self.client_scan, data, p, capture_sql, |t, body| {
            if let Some(slow) = slow.as_mut() {
                slow.saw_statement(t, body);
            }
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
