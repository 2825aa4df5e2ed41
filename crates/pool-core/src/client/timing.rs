//! What a bound period times: pgtide's `query_timeout` and `idle_in_transaction_timeout`,
//! the server's time per round trip (handed to the [`Checkout`], which keeps the pool's
//! `server_query` and `server_tx` histograms), and who cancelled a statement the server
//! answered with 57014.
//!
//! The clock is read only for what is on, and never for a one-statement transaction in
//! transaction mode: the checkout starts the first round trip and the release ends the last
//! one. A transaction of several statements (or session mode) reads it once when the server
//! answers a round trip and once when the client starts the next ([`Now`] shares one read
//! between everything that needs the time of the same event).

use std::time::Duration;

use pgtide_config::PoolSettings;
use pgtide_protocol::TransactionStatus;

use super::progress::Progress;
use crate::cancel::CancelSlot;
use crate::clock::Instant;
use crate::pool::Checkout;

/// The time of one event, read from the clock at most once and only when asked for.
#[derive(Debug, Default)]
pub(super) struct Now(Option<Instant>);

impl Now {
    /// The time, reading the clock the first time.
    pub(super) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// Who cancelled a statement that the server answered with 57014 (query_canceled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Canceller {
    /// pgtide, at `query_timeout` (already reported as such).
    Pgtide,
    /// The client, with a CancelRequest pgtide forwarded.
    Client,
    /// Nobody through pgtide: the server's own `statement_timeout`.
    Server,
}

/// The timers and clocks of one bound period.
#[derive(Debug)]
pub(super) struct Timing {
    /// As of when the transaction started (the idle wait refreshes them when the client's
    /// bytes arrive).
    query_timeout: Option<Duration>,
    idle_tx_timeout: Option<Duration>,
    /// When the oldest unanswered sync point was sent, for query_timeout.
    query_started: Option<Instant>,
    /// pgtide cancelled the pending sync points at query_timeout (no second cancel for them).
    pub(super) cancel_sent: bool,
    /// That cancel's 57014 has not been seen yet.
    own_cancel: bool,
    /// When the last ReadyForQuery arrived, for idle_in_transaction_timeout.
    last_ready: Option<Instant>,
    /// The server answered every sync point and waits for the client, so the next sync point
    /// starts a round trip ([`Checkout::asked`]). False during the first round trip, which the
    /// checkout times from its own start.
    server_waits: bool,
}

impl Timing {
    /// The timers of a bound period starting now, with `p` as the client's first bytes left it.
    pub(super) fn new(settings: &PoolSettings, p: &Progress) -> Self {
        let query_timeout = settings.query_timeout.non_zero();
        let idle_tx_timeout = settings.idle_in_transaction_timeout.non_zero();
        // Clocks are read only for the timeouts that are on: the hot path pays nothing
        // otherwise.
        let mut now = Now::default();
        Timing {
            query_timeout,
            idle_tx_timeout,
            query_started: (p.pending > 0 && query_timeout.is_some()).then(|| now.get()),
            cancel_sent: false,
            own_cancel: false,
            last_ready: idle_tx_timeout.map(|_| now.get()),
            server_waits: false,
        }
    }

    /// The query_timeout in force, for its report.
    pub(super) fn query_timeout(&self) -> Duration {
        self.query_timeout.unwrap_or_default()
    }

    /// The idle_in_transaction_timeout in force, for its report.
    pub(super) fn idle_tx_timeout(&self) -> Duration {
        self.idle_tx_timeout.unwrap_or_default()
    }

    /// When a timeout fires next, if one applies: query_timeout while sync points are
    /// unanswered (and pgtide has not cancelled them yet), idle_in_transaction_timeout while
    /// the server waits inside a transaction.
    pub(super) fn deadline(&self, p: &Progress) -> Option<Instant> {
        if p.pending > 0 {
            self.query_timeout
                .filter(|_| !self.cancel_sent)
                .zip(self.query_started)
                .map(|(t, started)| started + t)
        } else if p.at_ready && p.status != TransactionStatus::Idle {
            self.idle_tx_timeout
                .zip(self.last_ready)
                .map(|(t, at)| at + t)
        } else {
            None
        }
    }

    /// Client bytes with at least one sync point went to the server: a new round trip starts
    /// if the server was waiting for the client, and query_timeout counts from now if it is on
    /// and not already counting.
    pub(super) fn sent(&mut self, checkout: &mut Checkout, now: &mut Now) {
        if std::mem::take(&mut self.server_waits) {
            checkout.asked(now.get());
        }
        if self.query_started.is_none() && self.query_timeout.is_some() {
            self.query_started = Some(now.get());
        }
    }

    /// pgtide cancels the pending sync points at query_timeout.
    pub(super) fn cancelling(&mut self) {
        self.cancel_sent = true;
        self.own_cancel = true;
    }

    /// After a server read that left no sync point pending: query_timeout stops and
    /// idle_in_transaction_timeout restarts.
    pub(super) fn all_answered(&mut self, now: &mut Now) {
        self.query_started = None;
        self.cancel_sent = false;
        self.own_cancel = false;
        if self.idle_tx_timeout.is_some() {
            self.last_ready = Some(now.get());
        }
    }

    /// A ReadyForQuery answered the last pending sync point and the server stays with the
    /// client (the transaction goes on, or session mode): the round trip ends, and with status
    /// 'I' the transaction. Cancels the client sent that found nothing to cancel are forgotten.
    /// Not called when the server is released: the release ends the last round trip itself.
    pub(super) fn round_trip_done(
        &mut self,
        checkout: &mut Checkout,
        status: TransactionStatus,
        slot: &CancelSlot,
        now: &mut Now,
    ) {
        checkout.answered(now.get(), status == TransactionStatus::Idle);
        self.server_waits = true;
        slot.clear_forwarded();
    }

    /// Who cancelled the statement of a 57014 just seen: pgtide's own cancel first, then one
    /// the client sent through pgtide; otherwise the server cancelled it itself, at its
    /// statement_timeout (recognised without reading the message, which is in the server's
    /// `lc_messages`). A 57014 raised by other means (`pg_cancel_backend` from another session,
    /// a `RAISE … USING ERRCODE`) counts as a statement timeout too: pgtide cannot tell them
    /// apart, and neither is the client's own doing.
    pub(super) fn canceller(&mut self, slot: &CancelSlot) -> Canceller {
        if std::mem::take(&mut self.own_cancel) {
            Canceller::Pgtide
        } else if slot.take_forwarded() {
            Canceller::Client
        } else {
            Canceller::Server
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::CancelRegistry;
    use pgtide_protocol::startup::CancelKey;
    use std::sync::Arc;

    fn settings(query_timeout_s: u64, idle_tx_s: u64) -> PoolSettings {
        PoolSettings {
            query_timeout: Duration::from_secs(query_timeout_s).into(),
            idle_in_transaction_timeout: Duration::from_secs(idle_tx_s).into(),
            ..PoolSettings::default()
        }
    }

    fn busy() -> Progress {
        let mut p = Progress::new();
        p.client_frame(b'Q');
        p
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_timeouts_that_are_on_have_deadlines() {
        let off = Timing::new(&settings(0, 0), &busy());
        assert_eq!(off.deadline(&busy()), None);
        let start = Instant::now();
        let t = Timing::new(&settings(2, 0), &busy());
        assert_eq!(t.deadline(&busy()), Some(start + Duration::from_secs(2)));
        let mut t = Timing::new(&settings(2, 0), &busy());
        t.cancelling();
        assert_eq!(t.deadline(&busy()), None, "one cancel per query");
        let mut in_tx = Progress::new();
        in_tx.client_frame(b'Q');
        in_tx.server_frame(b'Z', Some(b"T"));
        let t = Timing::new(&settings(0, 5), &Progress::new());
        assert_eq!(t.deadline(&in_tx), Some(start + Duration::from_secs(5)));
        assert_eq!(
            t.deadline(&Progress::new()),
            None,
            "idle outside a transaction"
        );
    }

    #[tokio::test]
    async fn a_57014_is_the_servers_unless_pgtide_or_the_client_cancelled() {
        let registry = Arc::new(CancelRegistry::default());
        let reg = registry.register();
        let slot = &reg.slot;
        let mut t = Timing::new(&settings(1, 0), &busy());
        assert_eq!(t.canceller(slot), Canceller::Server);
        t.cancelling();
        assert_eq!(t.canceller(slot), Canceller::Pgtide);
        assert_eq!(
            t.canceller(slot),
            Canceller::Server,
            "pgtide's cancel is used up"
        );

        // A cancel forwarded to the client's server (a listener that takes it and closes).
        let sink = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = sink.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            while let Ok((mut s, _)) = sink.accept().await {
                let mut request = [0u8; 16];
                let _ = s.read_exact(&mut request).await;
            }
        });
        let key = CancelKey {
            process_id: 3,
            secret_key: 4,
        };
        slot.set(Some((addr, key)));
        assert!(registry.cancel(reg.key()).await);
        assert_eq!(t.canceller(slot), Canceller::Client);
        assert_eq!(t.canceller(slot), Canceller::Server);
    }
}
