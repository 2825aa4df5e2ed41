//! The JSON shapes of the API, mapped from pool-core's plain snapshot structs. Durations are
//! seconds (floats, fields ending in `_seconds`), instants RFC 3339 UTC, limits TOML values as
//! the config file spells them (`"5s"`, `20`, `true`).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use pgtide_config::InForce;
use pgtide_pool_core::adaptive::Decision;
use pgtide_pool_core::clients::{ClientState, ClientView};
use pgtide_pool_core::clock::Instant;
use pgtide_pool_core::events::Event;
use pgtide_pool_core::lifecycle::ReloadReport;
use pgtide_pool_core::pool::{Percentiles, Signals};
use pgtide_pool_core::snapshot::{PoolView, ServerState, ServerView};
use pgtide_pool_core::FailureClass;
use serde::Serialize;

use crate::time::rfc3339;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One setting in force.
#[derive(Debug, Serialize)]
pub struct LimitDto {
    /// The value, as the config file spells it.
    pub value: toml::Value,
    /// `default`, `config`, `override` or `controller`.
    pub source: pgtide_config::Source,
    /// The configuration's value an override masks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked: Option<toml::Value>,
}

/// Settings in force by key.
pub fn limits(all: &[InForce]) -> BTreeMap<String, LimitDto> {
    all.iter()
        .map(|v| {
            (
                v.key.clone(),
                LimitDto {
                    value: v.value.clone(),
                    source: v.source,
                    masked: v.masked.clone(),
                },
            )
        })
        .collect()
}

/// A distribution over the signal window.
#[derive(Debug, Serialize)]
pub struct PercentilesDto {
    count: u64,
    mean_seconds: Option<f64>,
    p50_seconds: f64,
    p95_seconds: f64,
    p99_seconds: f64,
}

impl From<&Percentiles> for PercentilesDto {
    fn from(p: &Percentiles) -> Self {
        PercentilesDto {
            count: p.count,
            mean_seconds: p.mean.map(secs),
            p50_seconds: secs(p.p50),
            p95_seconds: secs(p.p95),
            p99_seconds: secs(p.p99),
        }
    }
}

fn by_class(list: &[(FailureClass, u64)]) -> BTreeMap<&'static str, u64> {
    list.iter().map(|(c, n)| (c.as_str(), *n)).collect()
}

/// A pool's signals over the window since the controller's last reading (or the pool's
/// creation while no controller reads them).
#[derive(Debug, Serialize)]
pub struct SignalsDto {
    window_seconds: f64,
    acquires: u64,
    transactions: u64,
    transactions_per_second: f64,
    acquire_timeouts: u64,
    acquire_wait: PercentilesDto,
    server_transaction: PercentilesDto,
    server_query: PercentilesDto,
    connect: PercentilesDto,
    connect_failures: BTreeMap<&'static str, u64>,
    utilization: Option<f64>,
    busy_servers: f64,
    open_servers: f64,
    failures: BTreeMap<&'static str, u64>,
}

impl From<&Signals> for SignalsDto {
    fn from(s: &Signals) -> Self {
        let window = secs(s.window);
        SignalsDto {
            window_seconds: window,
            acquires: s.acquires,
            transactions: s.server_tx.count,
            transactions_per_second: if window > 0.0 {
                s.server_tx.count as f64 / window
            } else {
                0.0
            },
            acquire_timeouts: s.acquire_timeouts,
            acquire_wait: (&s.acquire_wait).into(),
            server_transaction: (&s.server_tx).into(),
            server_query: (&s.server_query).into(),
            connect: (&s.connect_time).into(),
            connect_failures: by_class(&s.connect_failures),
            utilization: s.utilization,
            busy_servers: s.busy_servers,
            open_servers: s.open_servers,
            failures: by_class(&s.failures),
        }
    }
}

/// Sizes.
#[derive(Debug, Serialize)]
pub struct SizeDto {
    /// Servers open or being opened.
    current: u32,
    /// The size the pool may reach now.
    target: u32,
    /// The adaptive controller's target, when it set one.
    controller_target: Option<u32>,
    min: Option<u32>,
    max: Option<u32>,
}

/// Servers by state.
#[derive(Debug, Serialize)]
pub struct ServerCountsDto {
    active: usize,
    idle: usize,
    connecting: u32,
}

/// Clients by state.
#[derive(Debug, Serialize)]
pub struct ClientCountsDto {
    active: usize,
    waiting: usize,
}

/// What the adaptive controller read for one decision.
#[derive(Debug, Serialize)]
pub struct InputsDto {
    window_seconds: f64,
    waiting: u32,
    acquire_wait_p95_seconds: f64,
    acquire_timeouts: u64,
    transactions_per_second: f64,
    busy_servers: f64,
    utilization: Option<f64>,
    server_query_mean_seconds: Option<f64>,
    connect_failures: u64,
    too_many_connections: u64,
    open: u32,
}

/// One decision of the adaptive controller.
#[derive(Debug, Serialize)]
pub struct DecisionDto {
    at: String,
    from: u32,
    target: u32,
    /// `up`, `down` or `hold`.
    direction: &'static str,
    /// `demand`, `saturated`, `connect_failures`, `low_utilization`, `at_ceiling`, `at_limit`,
    /// `steady`, `bounds`.
    reason: &'static str,
    /// The size demand asked for, before step bounds, ceilings and limits.
    wanted: u32,
    inputs: InputsDto,
}

impl DecisionDto {
    /// `d`, its instant placed on the wall clock by `now` (the snapshot's instant and time).
    fn new(d: &Decision, now: (Instant, SystemTime)) -> Self {
        let ago = now.0.saturating_duration_since(d.at);
        let i = &d.inputs;
        DecisionDto {
            at: rfc3339(now.1.checked_sub(ago).unwrap_or(now.1)),
            from: d.from,
            target: d.target,
            direction: d.direction.as_str(),
            reason: d.reason.as_str(),
            wanted: d.wanted,
            inputs: InputsDto {
                window_seconds: secs(i.window),
                waiting: i.waiting,
                acquire_wait_p95_seconds: secs(i.wait_p95),
                acquire_timeouts: i.timeouts,
                transactions_per_second: i.throughput,
                busy_servers: i.busy,
                utilization: i.utilization,
                server_query_mean_seconds: i.latency.map(secs),
                connect_failures: i.connect_failures,
                too_many_connections: i.too_many,
                open: i.open,
            },
        }
    }
}

/// One pool.
#[derive(Debug, Serialize)]
pub struct PoolDto {
    name: String,
    database: String,
    user: String,
    mode: pgtide_config::PoolMode,
    /// `open`, `paused` or `draining`.
    state: &'static str,
    size: SizeDto,
    servers: ServerCountsDto,
    clients: ClientCountsDto,
    limits: BTreeMap<String, LimitDto>,
    signals: SignalsDto,
    /// The adaptive controller's last decisions, oldest first.
    decisions: Vec<DecisionDto>,
    /// Failures since start, by class.
    failures_total: BTreeMap<&'static str, u64>,
}

impl PoolDto {
    /// `view` with the pool's failure counts since start (indexed as [`FailureClass::ALL`]).
    pub fn new(view: &PoolView, failures: &[u64]) -> Self {
        let now = (Instant::now(), SystemTime::now());
        let int = |key: &str| {
            view.limits
                .iter()
                .find(|v| v.key == key)
                .and_then(|v| v.value.as_integer())
                .and_then(|n| u32::try_from(n).ok())
        };
        PoolDto {
            name: view.name.clone(),
            database: view.database.clone(),
            user: view.user.clone(),
            mode: view.mode,
            state: view.admission.as_str(),
            size: SizeDto {
                current: view.open,
                target: view.size,
                controller_target: view.size_target,
                min: int("min_size"),
                max: int("max_size"),
            },
            servers: ServerCountsDto {
                active: view.active,
                idle: view.idle,
                connecting: view.connecting,
            },
            clients: ClientCountsDto {
                active: view.clients_active,
                waiting: view.clients_waiting,
            },
            limits: limits(&view.limits),
            signals: (&view.signals).into(),
            decisions: view
                .decisions
                .iter()
                .map(|d| DecisionDto::new(d, now))
                .collect(),
            failures_total: FailureClass::ALL
                .iter()
                .zip(failures)
                .filter(|(_, n)| **n > 0)
                .map(|(c, n)| (c.as_str(), *n))
                .collect(),
        }
    }
}

/// The name of a client state.
pub fn client_state_name(s: &ClientState) -> &'static str {
    match s {
        ClientState::Idle => "idle",
        ClientState::Waiting => "waiting",
        ClientState::Active { .. } => "active",
    }
}

/// One client.
#[derive(Debug, Serialize)]
pub struct ClientDto {
    id: u64,
    pool: String,
    database: String,
    user: String,
    addr: String,
    connected_at: String,
    /// `idle`, `waiting` or `active`.
    state: &'static str,
    /// The server it is bound to (when active).
    server: Option<String>,
    backend_pid: Option<i32>,
}

impl From<&ClientView> for ClientDto {
    fn from(c: &ClientView) -> Self {
        let (server, backend_pid) = match c.state {
            ClientState::Active {
                server,
                backend_pid,
            } => (Some(server.to_string()), Some(backend_pid)),
            _ => (None, None),
        };
        ClientDto {
            id: c.id,
            pool: format!("{}/{}", c.info.database, c.info.user),
            database: c.info.database.clone(),
            user: c.info.user.clone(),
            addr: c.info.addr.to_string(),
            connected_at: rfc3339(c.info.since),
            state: client_state_name(&c.state),
            server,
            backend_pid,
        }
    }
}

/// One server.
#[derive(Debug, Serialize)]
pub struct ServerDto {
    id: u64,
    pool: String,
    addr: String,
    backend_pid: i32,
    /// `idle` or `active`.
    state: &'static str,
    /// The client using it (when active and known).
    client: Option<u64>,
    idle_seconds: Option<f64>,
    age_seconds: f64,
    prepared_statements: Option<usize>,
    with_client_settings: bool,
}

impl From<&ServerView> for ServerDto {
    fn from(s: &ServerView) -> Self {
        let (state, client, idle) = match s.state {
            ServerState::Idle { for_ } => ("idle", None, Some(secs(for_))),
            ServerState::InUse { client } => ("active", client, None),
        };
        ServerDto {
            id: s.id,
            pool: s.pool.clone(),
            addr: s.addr.to_string(),
            backend_pid: s.backend_pid,
            state,
            client,
            idle_seconds: idle,
            age_seconds: secs(s.age),
            prepared_statements: s.prepared_statements,
            with_client_settings: s.with_client_settings,
        }
    }
}

/// One event of the ring.
#[derive(Debug, Serialize)]
pub struct EventDto {
    seq: u64,
    at: String,
    kind: &'static str,
    pool: String,
    class: Option<&'static str>,
    client: Option<String>,
    server: Option<String>,
    elapsed_seconds: Option<f64>,
    code: Option<String>,
    message: String,
}

impl From<&Event> for EventDto {
    fn from(e: &Event) -> Self {
        EventDto {
            seq: e.seq,
            at: rfc3339(e.at),
            kind: e.kind.as_str(),
            pool: e.pool.clone(),
            class: e.class.map(FailureClass::as_str),
            client: e.client.map(|c| c.to_string()),
            server: e.server.clone(),
            elapsed_seconds: e.elapsed.map(secs),
            code: e.code.clone(),
            message: e.message.clone(),
        }
    }
}

/// A runtime override that masks a different configured value.
#[derive(Debug, Serialize)]
pub struct MaskedDto {
    pool: String,
    key: String,
}

/// Overrides dropped by a reload.
#[derive(Debug, Serialize)]
pub struct DroppedDto {
    pool: String,
    problem: String,
}

/// What a reload did.
#[derive(Debug, Serialize)]
pub struct ReloadDto {
    /// Changed keys now in force.
    live: Vec<String>,
    /// Changed keys that need a restart (the running value is kept).
    restart: Vec<String>,
    /// `restart` is not empty.
    needs_restart: bool,
    masked: Vec<MaskedDto>,
    dropped: Vec<DroppedDto>,
}

impl From<&ReloadReport> for ReloadDto {
    fn from(r: &ReloadReport) -> Self {
        ReloadDto {
            live: r.live.clone(),
            restart: r.restart.clone(),
            needs_restart: !r.restart.is_empty(),
            masked: r
                .masked
                .iter()
                .map(|(pool, key)| MaskedDto {
                    pool: pool.clone(),
                    key: key.clone(),
                })
                .collect(),
            dropped: r
                .dropped
                .iter()
                .map(|(pool, problem)| DroppedDto {
                    pool: pool.clone(),
                    problem: problem.clone(),
                })
                .collect(),
        }
    }
}
