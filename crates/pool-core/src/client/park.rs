//! Idle sessions parked outside tokio tasks.
//!
//! A client that stays quiet costs, in a task, the task itself (header and the session's
//! future, which for a parkable session holds its transaction's state too) on top of its
//! session and socket. Parked, it costs only the boxed
//! session, a waker and a slot: one hub task holds every parked session and registers a waker
//! per session with tokio's socket registration. When a client sends bytes (or closes), its
//! waker queues its slot, the hub takes the session out and spawns a task for it again. At
//! shutdown the hub gives every parked session back to a task, which tells its client
//! `57P01` as any idle session does.
//!
//! A session parks right after login (pools open connections long before they use them),
//! unless its first query is already there, and once a full `PARK_AFTER` period of its park
//! timer passed without a message (so after 1 to 2 periods of quiet). Busy clients never park
//! and pay nothing per transaction for it: the timer is re-armed once per period, not per
//! message (at most one needless wake-up of the task per period). Sessions with
//! `client_idle_timeout` on, and TLS sessions, are not parked. A parked session sees settings
//! changed by a reload when its client next speaks: turning `client_idle_timeout` on does not
//! disconnect clients that are parked until they send something.

use std::future::{poll_fn, Future};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::session::{Next, Session, TaskWaits};
use crate::sync::lock;

/// The park timer's period: a client quiet for a whole period (between one and two periods
/// after its last message) is parked.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// Where idle sessions go; every session keeps a handle.
#[derive(Debug, Clone)]
pub struct Parking {
    tx: mpsc::UnboundedSender<Box<Session>>,
}

impl Parking {
    /// Starts the hub on the current runtime. It ends when every handle is gone.
    pub fn start(shutdown: watch::Receiver<bool>) -> Parking {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(hub(rx, shutdown));
        Parking { tx }
    }

    /// Parks `session` until its client sends something or pgtide shuts down.
    pub(super) fn park(&self, session: Box<Session>) {
        if let Err(back) = self.tx.send(session) {
            // The hub is gone (the runtime is stopping): keep serving the session in a task.
            resume(back.0);
        }
    }
}

/// Serves a session in the current task until it ends or parks.
pub(super) async fn drive(mut session: Box<Session>) {
    // Dropped with this task: a parked session keeps no timer or watcher holding its waker.
    let mut waits = TaskWaits::default();
    loop {
        session.refresh_settings();
        // A parkable session runs its transactions inline, which makes its future large: it
        // is boxed once per stay in a task, so that the others' idle tasks stay small.
        let next = if session.parkable() {
            Box::pin(session.run_parkable(&mut waits)).await
        } else {
            session.run_unparkable(&mut waits).await
        };
        match next {
            Next::Switch => continue,
            Next::Done => return,
            Next::Park => break,
        }
    }
    drop(waits);
    let parking = session.parking.clone();
    parking.park(session);
}

/// Gives a parked session a task again.
fn resume(session: Box<Session>) {
    tokio::spawn(drive(session));
}

/// Slots whose client woke, and the hub's waker.
#[derive(Default)]
struct Woken {
    slots: Mutex<Vec<usize>>,
    hub: Mutex<Option<Waker>>,
}

/// The waker registered for one parked session's socket.
struct SlotWaker {
    slot: usize,
    woken: Arc<Woken>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.woken.slots).push(self.slot);
        if let Some(hub) = lock(&self.woken.hub).as_ref() {
            hub.wake_by_ref();
        }
    }
}

/// The parked sessions, by slot. A slot is reused once its session left; a late wake-up for a
/// reused slot only resumes that slot's session early, which then waits in its task.
#[derive(Default)]
struct Parked {
    sessions: Vec<Option<Box<Session>>>,
    free: Vec<usize>,
}

impl Parked {
    /// Parks `session`, or resumes it at once when its socket is already readable.
    fn place(&mut self, session: Box<Session>, woken: &Arc<Woken>) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.sessions.push(None);
            self.sessions.len() - 1
        });
        let waker = Waker::from(Arc::new(SlotWaker {
            slot,
            woken: woken.clone(),
        }));
        // Pending registers `waker`. Even when Pending comes from tokio's cooperative budget
        // rather than the socket, tokio wakes `waker` later: the session resumes early, never
        // late.
        let ready = session
            .client
            .tcp()
            .poll_read_ready(&mut Context::from_waker(&waker));
        if ready.is_pending() {
            self.sessions[slot] = Some(session);
        } else {
            self.free.push(slot);
            resume(session);
        }
    }

    fn take(&mut self, slot: usize) -> Option<Box<Session>> {
        let session = self.sessions.get_mut(slot)?.take()?;
        self.free.push(slot);
        Some(session)
    }

    fn resume_all(&mut self) {
        for session in self.sessions.drain(..).flatten() {
            resume(session);
        }
        self.free.clear();
    }
}

async fn hub(mut rx: mpsc::UnboundedReceiver<Box<Session>>, mut shutdown: watch::Receiver<bool>) {
    let woken = Arc::new(Woken::default());
    let mut parked = Parked::default();
    let mut stopping = false;
    let changed = shutdown.changed();
    tokio::pin!(changed);
    poll_fn(|cx| {
        {
            let mut hub = lock(&woken.hub);
            if !hub.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *hub = Some(cx.waker().clone());
            }
        }
        if !stopping && changed.as_mut().poll(cx).is_ready() {
            // Shutting down (or the proxy is gone): every session goes back to a task, where
            // the idle wait tells its client.
            stopping = true;
            parked.resume_all();
        }
        loop {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(session)) if stopping => resume(session),
                Poll::Ready(Some(session)) => parked.place(session, &woken),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => break,
            }
        }
        let slots = std::mem::take(&mut *lock(&woken.slots));
        for slot in slots {
            if let Some(session) = parked.take(slot) {
                resume(session);
            }
        }
        Poll::Pending
    })
    .await;
}
