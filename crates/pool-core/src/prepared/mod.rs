//! Named prepared statements in transaction (and statement) mode.
//!
//! A driver that prepares `s1` in one transaction and binds it in the next may land on another
//! server, where `s1` does not exist. pgtide therefore keeps each client's statements itself
//! and maps every client name to a pool-wide statement keyed by its text and parameter types
//! (the same SQL from any client of the pool is one server-side statement, `pgtide_<id>`).
//! On the way to the server, Parse/Bind/Describe/Close are rewritten (see [`rewrite`]); a
//! statement the chosen server lacks is prepared there first, inline, and the extra
//! ParseComplete is removed from the server's answer before the client sees it.
//!
//! - [`Registry`] (per pool): text + types → [`Statement`], ids never reused.
//! - [`ServerStatements`] (per server connection): which statements it has, an LRU capped at
//!   `max_prepared_statements`; evicted ones are closed on the server.
//! - [`ClientStatements`] (per client): the client's names.
//! - [`Expect`]: what pgtide sent, in order, so it knows which answers to swallow.

pub mod rewrite;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use bytes::{BufMut, BytesMut};

use crate::sync::lock;

/// One server-side statement: `pgtide_<id>` with a fixed text and parameter types.
#[derive(Debug)]
pub struct Statement {
    /// Pool-unique, never reused.
    pub id: u64,
    /// The name used on servers.
    pub name: String,
    /// The Parse body after the statement name: query, NUL, type count, type OIDs.
    pub definition: Box<[u8]>,
}

impl Statement {
    /// Appends a Parse that creates this statement under its server name.
    pub fn encode_parse(&self, out: &mut BytesMut) {
        let len = 4 + self.name.len() + 1 + self.definition.len();
        out.reserve(1 + len);
        out.put_u8(pgtide_protocol::tag::frontend::PARSE);
        out.put_i32(len as i32);
        out.put_slice(self.name.as_bytes());
        out.put_u8(0);
        out.put_slice(&self.definition);
    }
}

/// The statements of one pool, by definition. Entries live while a client or a server holds
/// them; dead ones are swept as the map grows.
#[derive(Debug, Default)]
pub struct Registry {
    /// `database/user`, the metric label.
    pool: String,
    map: Mutex<RegistryMap>,
    next_id: AtomicU64,
    /// Statements prepared on a server because a client's statement was missing there.
    pub reprepares: AtomicU64,
    /// Statements closed on a server to stay under `max_prepared_statements`.
    pub evictions: AtomicU64,
}

#[derive(Debug, Default)]
struct RegistryMap {
    by_definition: HashMap<Box<[u8]>, Weak<Statement>>,
    sweep_at: usize,
}

impl Registry {
    /// An empty registry for the pool named `pool`.
    pub fn new(pool: String) -> Self {
        Registry {
            pool,
            ..Default::default()
        }
    }

    /// Counts a statement prepared again on a server that lacked it (a cache miss).
    pub fn count_reprepare(&self) {
        self.reprepares.fetch_add(1, Relaxed);
        metrics::counter!("pgtide_prepared_reprepares_total", "pool" => self.pool.clone())
            .increment(1);
    }

    /// Counts a statement closed on a server to stay under `max_prepared_statements`.
    pub fn count_eviction(&self) {
        self.evictions.fetch_add(1, Relaxed);
        metrics::counter!("pgtide_prepared_evictions_total", "pool" => self.pool.clone())
            .increment(1);
    }

    /// The statement with this definition, created on first use.
    pub fn intern(&self, definition: &[u8]) -> Arc<Statement> {
        let mut m = lock(&self.map);
        if let Some(s) = m.by_definition.get(definition).and_then(Weak::upgrade) {
            return s;
        }
        if m.by_definition.len() >= m.sweep_at {
            m.by_definition.retain(|_, w| w.strong_count() > 0);
            m.sweep_at = (m.by_definition.len() * 2).max(64);
        }
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let s = Arc::new(Statement {
            id,
            name: format!("pgtide_{id}"),
            definition: definition.into(),
        });
        m.by_definition
            .insert(definition.into(), Arc::downgrade(&s));
        metrics::gauge!("pgtide_prepared_statements", "pool" => self.pool.clone())
            .set(m.by_definition.len() as f64);
        s
    }

    /// Statements some client or server still holds.
    pub fn live(&self) -> usize {
        lock(&self.map)
            .by_definition
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

/// The statements prepared on one server connection, least recently used first out.
#[derive(Debug, Default)]
pub struct ServerStatements {
    map: HashMap<u64, (Arc<Statement>, u64)>,
    tick: u64,
}

impl ServerStatements {
    /// True when the server has `id`; marks it used.
    pub fn touch(&mut self, id: u64) -> bool {
        self.tick += 1;
        match self.map.get_mut(&id) {
            Some(e) => {
                e.1 = self.tick;
                true
            }
            None => false,
        }
    }

    /// Records `s` as prepared; returns the statement evicted to stay within `cap`.
    pub fn insert(&mut self, s: Arc<Statement>, cap: usize) -> Option<Arc<Statement>> {
        self.tick += 1;
        let mut evicted = None;
        if self.map.len() >= cap.max(1) {
            if let Some(&oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(id, _)| id)
            {
                evicted = self.map.remove(&oldest).map(|(s, _)| s);
            }
        }
        self.map.insert(s.id, (s, self.tick));
        evicted
    }

    /// Forgets `id` (it failed to prepare, or was deallocated).
    pub fn remove(&mut self, id: u64) {
        self.map.remove(&id);
    }

    /// Forgets everything (`DISCARD ALL`, `DEALLOCATE ALL`).
    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Statements on this server.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when none is prepared.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// One client's statement names, and the state of its byte stream between reads.
#[derive(Debug, Default)]
pub struct ClientStatements {
    /// Client name → statement.
    pub names: HashMap<Box<str>, Arc<Statement>>,
    /// Bytes of a frame being passed through unchanged that have not arrived yet.
    pub passthrough_left: usize,
    /// Sync entries pushed since the last Execute (extended-protocol COPY FROM STDIN: the
    /// server ignores those Syncs, so they are taken back when copy data follows).
    pub syncs_since_execute: usize,
    /// Copy data was seen since the last Execute.
    pub in_copy: bool,
    /// The answer queue, kept here between transactions so its allocation is reused.
    pub expect: Expected,
}

/// What pgtide sent a server that produces an answer pgtide must match, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A Parse: `swallow` when pgtide injected it (the client must not see its
    /// ParseComplete); `id` when it creates a statement on the server (forgotten again if it
    /// fails).
    Parse {
        /// Injected by pgtide.
        swallow: bool,
        /// The statement it creates.
        id: Option<u64>,
    },
    /// A Close (`swallow` when pgtide evicted a statement).
    Close {
        /// Injected by pgtide.
        swallow: bool,
    },
    /// A sync point (Sync, Query, FunctionCall): answered by ReadyForQuery.
    Sync,
}

/// The answers pgtide waits for on one server, oldest first.
pub type Expected = VecDeque<Expect>;
