//! The connection budget of a server address, learned from the server (`adaptive.learn_budget`).
//!
//! One control connection per address (tokio-postgres, reconnected at the next interval when it
//! breaks; the last budget stays in force meanwhile) reads, every `adaptive.budget_interval`:
//! `max_connections` − `superuser_reserved_connections` − `reserved_connections` (pgtide's own
//! setting) − the client backends that are neither this instance's server connections (known by
//! their backend pids) nor another pgtide instance's; and the CONNECTION LIMIT of the server
//! role and database, minus what others hold under them. That is what pgtide may hold there.
//!
//! Several pgtide instances in front of one database share it by demand: each control connection
//! advertises its instance's claim in its own `application_name` (`pgtide-budget <instance>
//! held=<n> want=<m>`; a connection of pgtide's own that never serves a client, so clients still
//! see only their own application_name), every instance reads the others', and all compute the
//! same water-filling split (`adaptive/share.rs`). The instance's share becomes the limit of a
//! cap that every pool to that address counts against, which the pools then share by demand in
//! turn; the cap is also a hard limit on the connections they open.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::adaptive::{water_fill, Claim};
use crate::budget::ConnCap;
use crate::server::ServerTarget;
use crate::shared::Shared;

/// What the server said, one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerCounts {
    /// `max_connections`.
    pub max_connections: i64,
    /// `superuser_reserved_connections`.
    pub superuser_reserved: i64,
    /// Client backends that are not this instance's server connections, nor any pgtide
    /// instance's control connection.
    pub others: i64,
    /// The server role's CONNECTION LIMIT (-1: none) and the backends of that role that are
    /// not this instance's.
    pub role_limit: i64,
    pub role_others: i64,
    /// The database's CONNECTION LIMIT (-1: none) and the backends in it that are not this
    /// instance's.
    pub db_limit: i64,
    pub db_others: i64,
}

/// Another pgtide instance at the same address, from its control connection's tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Server connections it holds (counted in `others`).
    pub held: u32,
    /// What its pools want there.
    pub want: u32,
}

/// What this instance may hold at the address: the free connections (after `reserved` and
/// what neither pgtide instance holds) split with the peers by demand.
pub fn budget(counts: &ServerCounts, reserved: u32, peers: &[Peer], want: u32) -> u32 {
    let peers_held: i64 = peers.iter().map(|p| i64::from(p.held)).sum();
    let not_pgtide = (counts.others - peers_held).max(0);
    let mut free =
        counts.max_connections - counts.superuser_reserved - i64::from(reserved) - not_pgtide;
    if counts.role_limit >= 0 {
        free = free.min(counts.role_limit - (counts.role_others - peers_held).max(0));
    }
    if counts.db_limit >= 0 {
        free = free.min(counts.db_limit - (counts.db_others - peers_held).max(0));
    }
    let free = u32::try_from(free.max(0)).unwrap_or(u32::MAX);
    if peers.is_empty() {
        return free;
    }
    let mut claims = vec![Claim { min: 0, want }];
    claims.extend(peers.iter().map(|p| Claim {
        min: 0,
        want: p.want,
    }));
    // The fair share, but never more than is free now: a peer above its share gives back as
    // its transactions end, and only then can this instance take it.
    let free_now = free.saturating_sub(u32::try_from(peers_held).unwrap_or(u32::MAX));
    water_fill(free, &claims)[0].min(free_now)
}

/// The `application_name` of an instance's control connection.
fn tag(instance: &str, held: usize, want: u32) -> String {
    format!("pgtide-budget {instance} held={held} want={want}")
}

/// Reads a peer's tag.
fn parse_tag(name: &str) -> Option<Peer> {
    let mut words = name
        .strip_prefix("pgtide-budget ")?
        .split_whitespace()
        .skip(1);
    let held = words.next()?.strip_prefix("held=")?.parse().ok()?;
    let want = words.next()?.strip_prefix("want=")?.parse().ok()?;
    Some(Peer { held, want })
}

/// The query: counts that exclude this instance's backends (`$1`) and every control connection.
const COUNTS: &str = "SELECT current_setting('max_connections')::int8, \
    current_setting('superuser_reserved_connections')::int8, \
    (SELECT count(*) FROM pg_stat_activity a WHERE a.backend_type = 'client backend' \
        AND NOT (a.pid = ANY($1)) AND a.application_name NOT LIKE 'pgtide-budget %'), \
    (SELECT rolconnlimit::int8 FROM pg_roles WHERE rolname = current_user), \
    (SELECT count(*) FROM pg_stat_activity a WHERE a.usename = current_user \
        AND NOT (a.pid = ANY($1)) AND a.application_name NOT LIKE 'pgtide-budget %'), \
    (SELECT datconnlimit::int8 FROM pg_database WHERE datname = current_database()), \
    (SELECT count(*) FROM pg_stat_activity a WHERE a.datname = current_database() \
        AND NOT (a.pid = ANY($1)) AND a.application_name NOT LIKE 'pgtide-budget %')";

/// Learns the budget of `addr` into `cap` until pgtide stops or nothing uses the address.
pub(crate) fn spawn_learner(
    shared: Weak<Shared>,
    addr: String,
    cap: Arc<ConnCap>,
    instance: String,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut client: Option<tokio_postgres::Client> = None;
        loop {
            let Some(s) = shared.upgrade() else {
                cap.learning.store(false, Relaxed);
                return;
            };
            let Some((target, reserved, interval)) = s.budget_source(&addr) else {
                tracing::info!(server = %addr, "no pool learns the budget of this server any more");
                cap.set_limit(0);
                cap.learning.store(false, Relaxed);
                return;
            };
            let (pids, want) = s.held_and_wanted(&addr);
            drop(s);
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                client = connect(&target, &instance).await;
            }
            if let Some(c) = &client {
                match read(c, &pids, &instance, want).await {
                    Ok((counts, peers)) => {
                        let limit = budget(&counts, reserved, &peers, want).max(1);
                        if limit != cap.limit() {
                            tracing::info!(server = %addr, budget = limit, max_connections = counts.max_connections, others = counts.others, peers = peers.len(), "connection budget learned");
                        }
                        cap.set_limit(limit);
                        metrics::gauge!("pgtide_budget_connections", "server" => addr.clone())
                            .set(f64::from(limit));
                    }
                    Err(e) => {
                        tracing::warn!(server = %addr, error = %e, "cannot read the connection budget; keeping the last one");
                        client = None;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = crate::lifecycle::stopping(&mut shutdown) => return,
            }
        }
    });
}

async fn connect(t: &ServerTarget, instance: &str) -> Option<tokio_postgres::Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&t.host)
        .port(t.port)
        .user(&t.user)
        .dbname(&t.dbname)
        .application_name(tag(instance, 0, 0))
        .connect_timeout(t.connect_timeout);
    if let Some(p) = &t.password {
        config.password(p.expose());
    }
    if t.tls.is_some() {
        tracing::warn!(server = %t.display_addr(), "learning the budget over TLS is not built yet; the budget is not learned");
        return None;
    }
    match config.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Some(client)
        }
        Err(e) => {
            tracing::warn!(server = %t.display_addr(), error = %e, "budget control connection failed");
            None
        }
    }
}

async fn read(
    c: &tokio_postgres::Client,
    pids: &[i32],
    instance: &str,
    want: u32,
) -> Result<(ServerCounts, Vec<Peer>), tokio_postgres::Error> {
    let set = format!(
        "SET application_name = {}",
        crate::server::quote_literal(&tag(instance, pids.len(), want))
    );
    c.batch_execute(&set).await?;
    let row = c.query_one(COUNTS, &[&pids]).await?;
    let counts = ServerCounts {
        max_connections: row.get(0),
        superuser_reserved: row.get(1),
        others: row.get(2),
        role_limit: row.get::<_, Option<i64>>(3).unwrap_or(-1),
        role_others: row.get(4),
        db_limit: row.get::<_, Option<i64>>(5).unwrap_or(-1),
        db_others: row.get(6),
    };
    let peers = c
        .query(
            "SELECT application_name FROM pg_stat_activity \
             WHERE application_name LIKE 'pgtide-budget %' AND pid <> pg_backend_pid()",
            &[],
        )
        .await?
        .iter()
        .filter_map(|r| parse_tag(r.get::<_, &str>(0)))
        .collect();
    Ok((counts, peers))
}

impl Shared {
    /// The credentials and settings to learn `addr`'s budget with: the first pool there that
    /// learns it (`None` when none does).
    fn budget_source(&self, addr: &str) -> Option<(ServerTarget, u32, Duration)> {
        self.pools().into_iter().find_map(|p| {
            let t = p.target();
            let s = p.settings();
            (t.display_addr() == addr && s.adaptive.learn_budget && !p.is_closed()).then(|| {
                (
                    (*t).clone(),
                    s.adaptive.reserved_connections,
                    s.adaptive.budget_interval.get(),
                )
            })
        })
    }

    /// The backend pids of this instance's servers at `addr`, and what its pools there want.
    fn held_and_wanted(&self, addr: &str) -> (Vec<i32>, u32) {
        let mut pids = Vec::new();
        let mut want = 0u32;
        for p in self.pools() {
            if p.target().display_addr() != addr {
                continue;
            }
            pids.extend(p.servers().0.iter().map(|s| s.backend_pid));
            let wanted = p
                .decisions
                .last(1)
                .first()
                .map_or(p.settings().min_size, |d| d.wanted);
            want = want.saturating_add(wanted.max(p.stats.active.load(Relaxed) as u32));
        }
        (pids, want)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(max: i64, others: i64) -> ServerCounts {
        ServerCounts {
            max_connections: max,
            superuser_reserved: 3,
            others,
            role_limit: -1,
            role_others: 0,
            db_limit: -1,
            db_others: 0,
        }
    }

    #[test]
    fn the_budget_is_what_is_free_after_reserves_and_others() {
        assert_eq!(budget(&counts(100, 10), 5, &[], 50), 82);
        assert_eq!(budget(&counts(20, 30), 5, &[], 50), 0, "never negative");
        let mut c = counts(100, 10);
        (c.role_limit, c.role_others) = (25, 5);
        assert_eq!(budget(&c, 5, &[], 50), 20, "the role's CONNECTION LIMIT");
        (c.db_limit, c.db_others) = (15, 2);
        assert_eq!(
            budget(&c, 5, &[], 50),
            13,
            "the database's CONNECTION LIMIT"
        );
    }

    #[test]
    fn instances_split_what_is_free_by_demand() {
        // 100 − 3 − 5 = 92, others are the peer's 30: nothing else holds connections.
        let peer = Peer { held: 30, want: 60 };
        let mine = budget(&counts(100, 30), 5, &[peer], 60);
        assert_eq!(mine, 46, "half each of 92");
        // A peer holding more than its share: only what is free now.
        let late = budget(&counts(100, 80), 5, &[Peer { held: 80, want: 60 }], 60);
        assert_eq!(late, 12);
        // A peer that wants little leaves the rest, once it has given it back.
        let small = |held| Peer { held, want: 10 };
        assert_eq!(budget(&counts(100, 30), 5, &[small(30)], 200), 62);
        assert_eq!(budget(&counts(100, 10), 5, &[small(10)], 200), 82);
    }

    #[test]
    fn tags_round_trip() {
        let t = tag("a1b2", 7, 12);
        assert_eq!(parse_tag(&t), Some(Peer { held: 7, want: 12 }));
        assert_eq!(parse_tag("psql"), None);
        assert_eq!(parse_tag("pgtide-budget x held=1"), None);
    }
}
