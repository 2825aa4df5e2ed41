//! Connection caps shared by several pools: `max_db_connections` (all pools of one database)
//! and `max_user_connections` (all pools of one user).
//!
//! A pool takes a slot from each of its caps before it opens a server connection and gives it
//! back when that connection closes. When a cap is full, the pool first asks the other pools
//! under the same cap to close one idle server (an idle connection in a quiet pool must not
//! starve a busy one), then waits — FIFO, bounded by the client's acquire deadline — for a slot
//! to be freed. A limit of 0 means no cap; limits change live on reload.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::sync::lock;

/// What a cap needs of the pools under it: closing one idle server to free a slot. A trait so
/// that caps do not depend on the pool (and can be tested without one).
pub trait ReclaimIdle: Send + Sync + std::fmt::Debug {
    /// Closes the oldest idle server, if any; true when one was closed.
    fn close_one_idle(&self) -> bool;
}

/// One cap and the pools under it.
#[derive(Debug)]
pub struct ConnCap {
    /// e.g. `max_db_connections of database app`, for error messages.
    describe: String,
    limit: AtomicU32,
    used: AtomicU32,
    /// A slot was freed (one waiter is woken per slot).
    freed: Notify,
    members: Mutex<Vec<Weak<dyn ReclaimIdle>>>,
    /// What the adaptive controllers of the pools under this cap want of it, by pool name:
    /// the cap is shared between them by demand (`adaptive/share.rs`).
    claims: Mutex<std::collections::BTreeMap<String, crate::adaptive::Claim>>,
    /// A learner keeps this cap's limit (`budget_learn.rs`).
    pub learning: std::sync::atomic::AtomicBool,
    /// The pools' controllers plan within their fair share of this cap (a connection budget);
    /// the hand-set caps are hard limits only, their slots moving between pools as idle servers
    /// are reclaimed.
    by_demand: bool,
}

impl ConnCap {
    /// A cap named for messages (`max_db_connections of database app`) with `limit` (0 = none).
    pub fn new(describe: String, limit: u32) -> Self {
        ConnCap {
            describe,
            limit: AtomicU32::new(limit),
            used: AtomicU32::new(0),
            freed: Notify::new(),
            members: Mutex::new(Vec::new()),
            claims: Mutex::default(),
            learning: Default::default(),
            by_demand: false,
        }
    }

    /// A connection budget: a cap whose pools' controllers also size within their fair share
    /// of it, by demand (the learned budget of a server).
    pub fn budget(describe: String, limit: u32) -> Self {
        ConnCap {
            by_demand: true,
            ..ConnCap::new(describe, limit)
        }
    }

    /// What this cap is, for messages.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// The limit now (0 = none).
    pub fn limit(&self) -> u32 {
        self.limit.load(Relaxed)
    }

    /// Server connections counted against this cap now.
    pub fn used(&self) -> u32 {
        self.used.load(Relaxed)
    }

    /// Changes the limit live; raising it wakes waiters.
    pub fn set_limit(&self, limit: u32) {
        let old = self.limit.swap(limit, Relaxed);
        if limit == 0 || limit > old {
            self.freed.notify_waiters();
        }
    }

    /// Registers a pool whose idle servers may be closed to make room for another.
    pub fn join(&self, pool: Weak<dyn ReclaimIdle>) {
        let mut members = lock(&self.members);
        members.retain(|p| p.strong_count() > 0);
        members.push(pool);
    }

    /// Takes a slot if one is free (always, without a limit).
    pub fn try_take(&self) -> bool {
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                let limit = self.limit.load(Relaxed);
                (limit == 0 || used < limit).then_some(used + 1)
            })
            .is_ok()
    }

    /// Gives a slot back and wakes one waiter.
    pub fn give(&self) {
        let _ = self
            .used
            .fetch_update(Relaxed, Relaxed, |u| Some(u.saturating_sub(1)));
        self.freed.notify_one();
    }

    /// Asks another pool under this cap to close one idle server; true when one was closed
    /// (its slot is then free).
    pub fn reclaim_idle(&self, except: &dyn ReclaimIdle) -> bool {
        let members: Vec<_> = lock(&self.members)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        members
            .iter()
            .filter(|p| !std::ptr::addr_eq(Arc::as_ptr(p), except))
            .any(|p| p.close_one_idle())
    }

    /// Posts `pool`'s claim and returns its fair share of the limit given every claim posted
    /// (`None` without a limit).
    pub fn share(&self, pool: &str, claim: crate::adaptive::Claim) -> Option<u32> {
        if !self.by_demand {
            return None;
        }
        let limit = self.limit();
        let mut claims = lock(&self.claims);
        claims.insert(pool.to_owned(), claim);
        if limit == 0 {
            return None;
        }
        let list: Vec<_> = claims.values().copied().collect();
        let at = claims.keys().position(|k| k == pool)?;
        crate::adaptive::water_fill(limit, &list).get(at).copied()
    }

    /// Withdraws `pool`'s claim (its controller stopped).
    pub fn withdraw(&self, pool: &str) {
        lock(&self.claims).remove(pool);
    }

    /// Resolves when a slot may have been freed.
    pub async fn freed(&self) {
        self.freed.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_limits_change_live() {
        let cap = ConnCap::new("max_db_connections of database app".into(), 2);
        assert!(cap.try_take());
        assert!(cap.try_take());
        assert!(!cap.try_take());
        cap.give();
        assert!(cap.try_take());
        cap.set_limit(0);
        assert!(cap.try_take());
        assert_eq!(cap.used(), 3);
        cap.set_limit(1);
        assert!(!cap.try_take());
    }
}
