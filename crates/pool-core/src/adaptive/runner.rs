//! The controller's tick for one pool: read the pool's signals, decide, apply the target, and
//! explain the move (a debug line per decision, an info line when the target changes, a
//! counter by direction and reason, the last decisions kept for the admin API).
//!
//! With `adaptive.enabled = false` the pool is a plain fixed-size pool (its target is cleared,
//! so `max_size` is in force). Runtime overrides of `max_size`/`min_size` bound the controller
//! (it reads the settings in force every tick); a reload keeps its target.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use pgtide_config::PoolSettings;
use tokio::sync::watch;

use super::decide::{decide, start_size, Decision, Direction, Inputs, Limits, State};
use crate::clock::Instant;
use crate::failure::FailureClass;
use crate::pool::{Pool, Signals};
use crate::sync::lock;

/// Decisions kept per pool for operators.
const KEPT_DECISIONS: usize = 64;

/// How long a ceiling learned from connect failures or saturation holds.
const CEILING_HOLD: Duration = Duration::from_secs(30);

/// The last decisions of a pool's controller, newest last.
#[derive(Debug, Default)]
pub struct DecisionLog(Mutex<VecDeque<Decision>>);

impl DecisionLog {
    /// Keeps `d`, dropping the oldest beyond [`KEPT_DECISIONS`].
    pub fn push(&self, d: Decision) {
        let mut log = lock(&self.0);
        if log.len() >= KEPT_DECISIONS {
            log.pop_front();
        }
        log.push_back(d);
    }

    /// The last `n` decisions, oldest first.
    pub fn last(&self, n: usize) -> Vec<Decision> {
        let log = lock(&self.0);
        log.iter()
            .skip(log.len().saturating_sub(n))
            .copied()
            .collect()
    }
}

/// The controller's view of a window of pool signals.
pub fn inputs_from(s: &Signals) -> Inputs {
    let secs = s.window.as_secs_f64();
    let failures = |classes: &[FailureClass]| -> u64 {
        s.connect_failures
            .iter()
            .filter(|(c, _)| classes.contains(c))
            .map(|(_, n)| n)
            .sum()
    };
    Inputs {
        window: s.window,
        waiting: u32::try_from(s.waiting).unwrap_or(u32::MAX),
        wait_p95: s.acquire_wait.p95,
        timeouts: s.acquire_timeouts,
        throughput: if secs > 0.0 {
            s.acquires as f64 / secs
        } else {
            0.0
        },
        busy: s.busy_servers,
        utilization: s.utilization,
        latency: s.server_query.mean,
        connect_failures: failures(&[
            FailureClass::ConnectTimeout,
            FailureClass::ConnectRefused,
            FailureClass::ConnectUnreachable,
            FailureClass::ServerTooManyConnections,
            FailureClass::ServerShutdown,
        ]),
        too_many: failures(&[FailureClass::ServerTooManyConnections]),
        open: u32::try_from(s.open).unwrap_or(u32::MAX),
    }
}

/// The controller's bounds and tuning from the settings in force.
pub fn limits_from(settings: &PoolSettings, budget: Option<u32>) -> Limits {
    let a = &settings.adaptive;
    Limits {
        min: settings.min_size,
        max: settings.max_size,
        budget,
        target_wait: a.target_acquire_wait.get(),
        max_step: a.max_connects_per_tick,
        shrink_utilization: a.shrink_utilization,
        shrink_after: a.shrink_after.get(),
        saturation_ratio: a.saturation_ratio,
        ceiling_hold: CEILING_HOLD,
    }
}

/// Where the pool's controller starts ([`start_size`] from the settings in force).
fn initial_target(settings: &PoolSettings, open: u32) -> u32 {
    start_size(&limits_from(settings, None), open)
}

/// Runs `pool`'s controller until the pool is dropped or closed, or pgtide stops.
pub fn spawn_controller(pool: Weak<Pool>, mut shutdown: watch::Receiver<bool>) {
    // The pool starts sized by the controller, not at max_size until the first tick.
    let mut state: Option<State> = pool.upgrade().and_then(|p| {
        let settings = p.settings();
        settings.adaptive.enabled.then(|| {
            let start = initial_target(&settings, p.sizes().0);
            // Inside this pool's share of any cap it counts against, from the start.
            let share = p.budget_share(settings.min_size, start);
            let st = State::new(share.map_or(start, |b| start.min(b.max(settings.min_size))));
            p.set_size_target(Some(st.target));
            st
        })
    });
    tokio::spawn(async move {
        // This pool's share of the caps it counts against, from the claims of the last tick.
        let mut budget: Option<u32> = None;
        loop {
            let tick = match pool.upgrade() {
                Some(p) => p.settings().adaptive.tick.get(),
                None => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = crate::lifecycle::stopping(&mut shutdown) => return,
            }
            let Some(p) = pool.upgrade() else { return };
            if p.is_closed() {
                p.withdraw_claims();
                return;
            }
            let settings = p.settings();
            if !settings.adaptive.enabled {
                p.withdraw_claims();
                budget = None;
                if state.take().is_some() || p.size_target().is_some() {
                    p.set_size_target(None);
                    tracing::info!(pool = %p.name(), "adaptive sizing off: max_size in force");
                }
                continue;
            }
            let now = Instant::now();
            let signals = p.signals(now);
            let st = state.get_or_insert_with(|| {
                State::new(initial_target(
                    &settings,
                    u32::try_from(signals.open).unwrap_or(0),
                ))
            });
            if budget.is_none() {
                budget = p.budget_share(settings.min_size, st.target);
            }
            let d = decide(
                st,
                &inputs_from(&signals),
                &limits_from(&settings, budget),
                now,
            );
            // Claim what demand asked for; the share comes back for the next tick.
            budget = p.budget_share(settings.min_size, d.wanted);
            apply(&p, &d);
            if d.direction == Direction::Up {
                // Pre-warm what waiting clients will not open themselves, within the step.
                let (open, _, _) = p.sizes();
                let n = d
                    .target
                    .saturating_sub(open)
                    .min(settings.adaptive.max_connects_per_tick);
                if n > 0 {
                    let pool = p.clone();
                    tokio::spawn(async move { pool.prewarm(n).await });
                }
            }
        }
    });
}

/// Applies and explains one decision.
fn apply(p: &Pool, d: &Decision) {
    if p.size_target() != Some(d.target) {
        p.set_size_target(Some(d.target));
    }
    metrics::counter!(
        "pgtide_controller_decisions_total",
        "pool" => p.name().to_owned(),
        "direction" => d.direction.as_str(),
        "reason" => d.reason.as_str()
    )
    .increment(1);
    metrics::gauge!("pgtide_pool_target_size", "pool" => p.name().to_owned())
        .set(f64::from(d.target));
    let i = &d.inputs;
    tracing::debug!(
        pool = %p.name(), from = d.from, target = d.target, direction = d.direction.as_str(),
        reason = d.reason.as_str(), waiting = i.waiting, wait_p95_ms = i.wait_p95.as_secs_f64() * 1e3,
        tps = i.throughput, busy = i.busy, utilization = i.utilization,
        latency_ms = i.latency.map(|l| l.as_secs_f64() * 1e3), connect_failures = i.connect_failures,
        "controller decision"
    );
    if d.direction != Direction::Hold {
        tracing::info!(
            pool = %p.name(), from = d.from, target = d.target, reason = d.reason.as_str(),
            waiting = i.waiting, busy = i.busy, tps = i.throughput,
            "pool target size changed"
        );
    }
    p.decisions.push(*d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_leaves_room_for_a_burst_inside_the_bounds() {
        let mut s = PoolSettings::default();
        assert_eq!(initial_target(&s, 0), 8);
        assert_eq!(initial_target(&s, 12), 12);
        s.max_size = 5;
        assert_eq!(initial_target(&s, 0), 5);
        s.min_size = 3;
        s.max_size = 20;
        s.adaptive.max_connects_per_tick = 1;
        assert_eq!(initial_target(&s, 0), 3);
    }
}
