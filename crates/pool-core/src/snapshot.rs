//! Read-only snapshots for operators: plain structs of what pgtide is doing now, built without
//! disturbing it (no lock on the per-transaction path is taken for long, the controller's
//! signal windows are left alone). The admin API serializes these; pool-core knows nothing of
//! HTTP or JSON.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use pgtide_config::{InForce, PoolMode};

use crate::clients::{ClientState, ClientView};
use crate::clock::Instant;
use crate::events::Event;
use crate::pool::{size_in_force, Admission, Signals};
use crate::shared::Shared;

/// Everything at one instant.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When it was taken.
    pub taken_at: SystemTime,
    /// Every pool.
    pub pools: Vec<PoolView>,
    /// Every logged-in client.
    pub clients: Vec<ClientView>,
    /// Every open server.
    pub servers: Vec<ServerView>,
    /// Events after the sequence number asked for, oldest first.
    pub events: Vec<Event>,
}

/// One pool.
#[derive(Debug, Clone)]
pub struct PoolView {
    /// `database/user`.
    pub name: String,
    /// Database clients use.
    pub database: String,
    /// Client user.
    pub user: String,
    /// Pooling mode.
    pub mode: PoolMode,
    /// Open, paused or draining.
    pub admission: Admission,
    /// Every setting in force with its source (file, override, default, controller).
    pub limits: Vec<InForce>,
    /// The size the pool may reach now (the controller's target inside [min, max], or max).
    pub size: u32,
    /// The controller's target, when it set one.
    pub size_target: Option<u32>,
    /// Server connections open or being opened.
    pub open: u32,
    /// Being opened.
    pub connecting: u32,
    /// Idle in the pool.
    pub idle: usize,
    /// Checked out by clients.
    pub active: usize,
    /// Clients of this pool bound to a server now.
    pub clients_active: usize,
    /// Clients of this pool queued for a server now.
    pub clients_waiting: usize,
    /// The signals since the controller's last reading.
    pub signals: Signals,
    /// The adaptive controller's last decisions, oldest first, with their inputs.
    pub decisions: Vec<crate::adaptive::Decision>,
}

/// What a server is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// In the pool, for this long.
    Idle {
        /// Since it was returned.
        for_: Duration,
    },
    /// Checked out.
    InUse {
        /// The client using it, when known.
        client: Option<u64>,
    },
}

/// One open server.
#[derive(Debug, Clone)]
pub struct ServerView {
    /// pgtide's id.
    pub id: u64,
    /// `database/user`.
    pub pool: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Its backend process id.
    pub backend_pid: i32,
    /// What it does now.
    pub state: ServerState,
    /// Since it was opened.
    pub age: Duration,
    /// Prepared statements pgtide keeps on it (known while it is idle).
    pub prepared_statements: Option<usize>,
    /// Started with a client's own settings (session mode).
    pub with_client_settings: bool,
}

impl Shared {
    /// What pgtide is doing now, with the events after sequence number `events_after`.
    pub fn snapshot(&self, events_after: u64) -> Snapshot {
        let now = Instant::now();
        let clients = self.registry.list();
        let by_pid: HashMap<i32, u64> = clients
            .iter()
            .filter_map(|c| match c.state {
                ClientState::Active { backend_pid, .. } => Some((backend_pid, c.id)),
                _ => None,
            })
            .collect();
        let mut pools = Vec::new();
        let mut servers = Vec::new();
        let mut all = self.pools();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        for pool in all {
            let key = pool.key().clone();
            let of_pool =
                |c: &&ClientView| c.info.database == key.database && c.info.user == key.user;
            let settings = pool.settings();
            let (open, idle, _) = pool.sizes();
            let established = pool.stats.established();
            let (open_servers, idle_servers) = pool.servers();
            let idle_by_id: HashMap<u64, (Instant, usize)> = idle_servers
                .iter()
                .map(|(id, since, prepared)| (*id, (*since, *prepared)))
                .collect();
            for s in open_servers {
                let state = match idle_by_id.get(&s.id) {
                    Some((since, _)) => ServerState::Idle {
                        for_: now.saturating_duration_since(*since),
                    },
                    None => ServerState::InUse {
                        client: by_pid.get(&s.backend_pid).copied(),
                    },
                };
                servers.push(ServerView {
                    id: s.id,
                    pool: pool.name().to_owned(),
                    addr: s.addr,
                    backend_pid: s.backend_pid,
                    state,
                    age: now.saturating_duration_since(s.created),
                    prepared_statements: idle_by_id.get(&s.id).map(|(_, n)| *n),
                    with_client_settings: s.with_client_settings,
                });
            }
            pools.push(PoolView {
                name: pool.name().to_owned(),
                database: key.database.clone(),
                user: key.user.clone(),
                mode: settings.mode,
                admission: pool.admission(),
                limits: pool.in_force(),
                size: size_in_force(&settings, pool.size_target()),
                size_target: pool.size_target(),
                open,
                connecting: open.saturating_sub(u32::try_from(established).unwrap_or(u32::MAX)),
                idle,
                active: pool.stats.active.load(std::sync::atomic::Ordering::Relaxed),
                clients_active: clients
                    .iter()
                    .filter(of_pool)
                    .filter(|c| matches!(c.state, ClientState::Active { .. }))
                    .count(),
                clients_waiting: clients
                    .iter()
                    .filter(of_pool)
                    .filter(|c| c.state == ClientState::Waiting)
                    .count(),
                signals: pool.peek_signals(now),
                decisions: pool.decisions.last(16),
            });
        }
        Snapshot {
            taken_at: SystemTime::now(),
            pools,
            clients,
            servers,
            events: self.events.since(events_after, usize::MAX),
        }
    }
}
