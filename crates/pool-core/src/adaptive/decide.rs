//! The sizing policy as a pure function: `decide(&mut state, &inputs, &limits, now)` returns
//! the pool's next target size and why. No I/O, no clock reads: time comes in as `now`, so
//! the deterministic simulation (`adaptive/sim.rs`) and paused-clock tests drive it exactly
//! as the pool's tick does.
//!
//! The rules, in order (docs/adaptive.md explains where each comes from):
//! 1. **Connect failures** (timeouts, refusals, unreachable, 53300, 57P03): multiplicative
//!    decrease to half, and a ceiling remembered for `ceiling_hold` (AIMD's backoff).
//! 2. **Judge the last growth** (TCP Vegas): a growth step is a probe. One tick later, if
//!    clients still wait but throughput did not rise with the extra connections while server
//!    latency did, the database is saturated: go back to the size before the probe and keep
//!    it as a ceiling for `ceiling_hold`.
//! 3. **Grow on demand** (Little's law): clients waiting, acquire-wait p95 over the target, or
//!    timed-out acquires ask for `busy + waiting` servers; the step is bounded by
//!    `max_connects_per_tick` (no connection storm) and by any ceiling.
//! 4. **Shrink on low utilization**, only after it stayed under `shrink_utilization` for
//!    `shrink_after` and no growth happened in that time (hysteresis), at most a quarter per
//!    tick, never below what the busy servers need at that utilization.
//!    Everything is clamped to `[min_size, max_size]` and the budget.

use std::time::Duration;

use crate::clock::Instant;

/// What the controller reads each tick (from [`crate::pool::Signals`], or from the simulation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Inputs {
    /// The window these figures cover.
    pub window: Duration,
    /// Clients queued for a server now.
    pub waiting: u32,
    /// Acquire-wait p95 over the window (timed-out waits included).
    pub wait_p95: Duration,
    /// Acquires that timed out in the window.
    pub timeouts: u64,
    /// Transactions (checkouts) completed per second over the window.
    pub throughput: f64,
    /// Mean busy servers over the window (time-weighted).
    pub busy: f64,
    /// Busy over open servers, time-weighted (`None` with no server open).
    pub utilization: Option<f64>,
    /// Mean server time per round trip in the window (`None` without samples).
    pub latency: Option<Duration>,
    /// Connect failures that say the server cannot take more connections or is down
    /// (connect timeouts, refusals, unreachable, 53300, 57P03) in the window.
    pub connect_failures: u64,
    /// Of those, 53300 too_many_connections.
    pub too_many: u64,
    /// Servers open now.
    pub open: u32,
}

/// The bounds and tuning of one pool's controller (from `[pool]` and `[pool.adaptive]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// `min_size`.
    pub min: u32,
    /// `max_size`.
    pub max: u32,
    /// The connection budget this pool may use now, when one applies.
    pub budget: Option<u32>,
    /// `adaptive.target_acquire_wait`.
    pub target_wait: Duration,
    /// `adaptive.max_connects_per_tick`.
    pub max_step: u32,
    /// `adaptive.shrink_utilization`.
    pub shrink_utilization: f64,
    /// `adaptive.shrink_after`.
    pub shrink_after: Duration,
    /// `adaptive.saturation_ratio`: server latency over this multiple of what it was before a
    /// growth step, with no throughput gained, is saturation.
    pub saturation_ratio: f64,
    /// How long a ceiling learned from failures or saturation holds.
    pub ceiling_hold: Duration,
}

/// Which way the target moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Grown.
    Up,
    /// Shrunk.
    Down,
    /// Unchanged.
    Hold,
}

impl Direction {
    /// Its label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
            Direction::Hold => "hold",
        }
    }
}

/// Why the controller decided what it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Clients waited (or timed out): more servers were needed.
    Demand,
    /// The last growth did not raise throughput and latency rose: the database is saturated.
    Saturated,
    /// Connects failed or were refused: backing off.
    ConnectFailures,
    /// Utilization stayed low long enough: fewer servers do.
    LowUtilization,
    /// Demand, but a learned ceiling (failures, saturation) holds the size.
    AtCeiling,
    /// Demand, but `max_size` or the budget holds the size.
    AtLimit,
    /// Nothing asked for a change.
    Steady,
    /// The bounds changed (an operator's override, a reload, the budget): the target moved
    /// into them.
    Bounds,
}

impl Reason {
    /// Its label (metrics, logs).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Demand => "demand",
            Reason::Saturated => "saturated",
            Reason::ConnectFailures => "connect_failures",
            Reason::LowUtilization => "low_utilization",
            Reason::AtCeiling => "at_ceiling",
            Reason::AtLimit => "at_limit",
            Reason::Steady => "steady",
            Reason::Bounds => "bounds",
        }
    }
}

/// One decision, with what it was based on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// When.
    pub at: Instant,
    /// The target before.
    pub from: u32,
    /// The target now.
    pub target: u32,
    /// Which way.
    pub direction: Direction,
    /// Why.
    pub reason: Reason,
    /// The size demand asked for, before the step bound, ceilings and limits (what the pool
    /// claims of a shared budget).
    pub wanted: u32,
    /// What it read.
    pub inputs: Inputs,
}

/// A growth step waiting to be judged.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Probe {
    from: u32,
    throughput: f64,
    latency: Option<Duration>,
}

/// What the controller remembers between ticks.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The target in force.
    pub target: u32,
    probe: Option<Probe>,
    /// A size not to exceed until the instant (learned from failures or saturation).
    ceiling: Option<(u32, Instant)>,
    /// Since when utilization has been low.
    low_since: Option<Instant>,
    /// The last growth.
    last_up: Option<Instant>,
    /// Saturated and stepping down: the size and throughput before the last step down.
    descent: Option<(u32, f64)>,
    /// Clients waiting at the previous tick (the queue's growth is unserved arrivals).
    prev_waiting: u32,
    /// How much the last decision grew the target (its servers took that many waiting
    /// clients out of the queue).
    last_growth: u32,
    /// The size demand asked for at the last decision.
    wanted: u32,
}

impl State {
    /// A controller starting at `target`.
    pub fn new(target: u32) -> Self {
        State {
            target,
            probe: None,
            ceiling: None,
            low_since: None,
            last_up: None,
            descent: None,
            prev_waiting: 0,
            last_growth: 0,
            wanted: target,
        }
    }

    /// The learned ceiling in force at `now`, if any.
    pub fn ceiling(&self, now: Instant) -> Option<u32> {
        self.ceiling
            .filter(|(_, until)| now < *until)
            .map(|(c, _)| c)
    }
}

/// Where a controller starts: room for a burst of two steps, or what is open already, inside
/// `[min_size, max_size]` (the daemon's tick and the simulation both start here).
pub fn start_size(l: &Limits, open: u32) -> u32 {
    l.max_step
        .saturating_mul(2)
        .max(open)
        .max(l.min)
        .clamp(l.min.max(1), l.max.max(1))
}

/// Throughput must rise by at least this fraction of what the extra connections would give
/// an unsaturated server for a growth step to count as useful (Vegas' alpha).
const USEFUL_GAIN: f64 = 0.25;

/// A queue of waiting clients is planned to drain over this many windows (more servers
/// than the arrival rate needs, for a while, without doubling the pool for a backlog).
const DRAIN_WINDOWS: f64 = 4.0;

/// A step down while saturated may lose at most this fraction of throughput to stand.
const DESCENT_LOSS: f64 = 0.03;

/// The next target.
pub fn decide(state: &mut State, i: &Inputs, l: &Limits, now: Instant) -> Decision {
    let from = state.target;
    let hard_max = l.budget.map_or(l.max, |b| b.min(l.max)).max(l.min);
    if state.ceiling.is_some_and(|(_, until)| now >= until) {
        state.ceiling = None;
    }
    // Without demand, a pool claims what its busy servers use, plus one.
    state.wanted = ((i.busy.ceil() as u32) + 1).min(state.target).max(l.min);
    let (mut target, reason) = step(state, i, l, now);
    state.prev_waiting = i.waiting;
    target = target.clamp(l.min, hard_max);
    state.last_growth = target.saturating_sub(from);
    let reason = if target != from && reason == Reason::Steady {
        Reason::Bounds
    } else {
        reason
    };
    if target > from {
        state.last_up = Some(now);
        state.low_since = None;
        if reason == Reason::Demand {
            state.probe = Some(Probe {
                from,
                throughput: i.throughput,
                latency: i.latency,
            });
        }
    }
    state.target = target;
    Decision {
        at: now,
        from,
        target,
        direction: match target.cmp(&from) {
            std::cmp::Ordering::Greater => Direction::Up,
            std::cmp::Ordering::Less => Direction::Down,
            std::cmp::Ordering::Equal => Direction::Hold,
        },
        reason,
        wanted: state.wanted,
        inputs: *i,
    }
}

/// Rules 1-4 without the final clamp.
fn step(state: &mut State, i: &Inputs, l: &Limits, now: Instant) -> (u32, Reason) {
    let size = state.target;
    // 1. Connect failures: halve, and remember.
    if i.connect_failures > 0 {
        state.probe = None;
        let base = if i.too_many > 0 {
            i.open.min(size)
        } else {
            size
        };
        let backed_off = (base / 2).max(l.min).max(1);
        state.ceiling = Some((backed_off, now + l.ceiling_hold));
        return (backed_off, Reason::ConnectFailures);
    }
    let demand = i.waiting > 0 || i.timeouts > 0 || i.wait_p95 > l.target_wait;
    // 2. Judge the last growth.
    if let Some(probe) = state.probe.take() {
        if demand && saturated(&probe, i, size, l) {
            state.ceiling = Some((probe.from, now + l.ceiling_hold));
            state.descent = Some((probe.from, probe.throughput));
            return (probe.from, Reason::Saturated);
        }
    }
    // 2b. Saturated: step down while fewer connections serve as much (less contention in the
    // database, lower latency); the first step that loses throughput is undone, and held.
    if let Some((prev, prev_tput)) = state.descent.take() {
        if demand && i.connect_failures == 0 {
            if size < prev && i.throughput < prev_tput * (1.0 - DESCENT_LOSS) {
                state.ceiling = Some((prev, now + l.ceiling_hold));
                return (prev, Reason::Saturated);
            }
            let lower = size.saturating_sub((size / 4).max(1)).max(l.min).max(1);
            if lower < size {
                state.descent = Some((size, i.throughput));
                state.ceiling = Some((size, now + l.ceiling_hold));
                return (lower, Reason::Saturated);
            }
        }
    }
    // 3. Grow on demand.
    if demand {
        state.low_since = None;
        // While the queue shrinks no faster than the last growth took clients out of it, every
        // waiting client would keep a server busy:
        // clients that wait for their answer before sending more (a closed loop: the usual
        // application) never show as arrivals beyond what is served.
        let short = (i.busy + f64::from(i.waiting)).ceil() as u32;
        let queue_holds = i.waiting + state.last_growth >= state.prev_waiting;
        let wanted = match i.latency {
            // Little's law: the arrival rate (served, timed out, and the queue's growth) times
            // the server time, plus enough to drain the queue over a few windows.
            Some(l_srv) if i.window > Duration::ZERO => {
                let secs = i.window.as_secs_f64();
                // A shrinking queue counts too: what is served beyond the arrivals drains it.
                let grew = f64::from(i.waiting) - f64::from(state.prev_waiting);
                let arrivals = (i.throughput + (i.timeouts as f64 + grew) / secs).max(0.0);
                let drain = f64::from(i.waiting) / (secs * DRAIN_WINDOWS);
                let little = ((arrivals + drain) * l_srv.as_secs_f64()).ceil() as u32;
                if queue_holds {
                    little.max(short)
                } else {
                    little
                }
            }
            _ => short,
        };
        let wanted = wanted.max(size + 1);
        state.wanted = wanted;
        let mut grown = wanted.min(size.saturating_add(l.max_step.max(1)));
        if let Some(c) = state.ceiling(now) {
            if grown > c {
                grown = c.max(size.min(c));
                if grown <= size {
                    return (size, Reason::AtCeiling);
                }
            }
        }
        let hard_max = l.budget.map_or(l.max, |b| b.min(l.max));
        if size >= hard_max {
            return (size, Reason::AtLimit);
        }
        return (grown, Reason::Demand);
    }
    // 4. Shrink on low utilization, after the hold.
    let low = i.utilization.is_some_and(|u| u < l.shrink_utilization);
    if !low {
        state.low_since = None;
        return (size, Reason::Steady);
    }
    let since = *state.low_since.get_or_insert(now);
    let held = now.saturating_duration_since(since) >= l.shrink_after;
    let grew_recently = state
        .last_up
        .is_some_and(|up| now.saturating_duration_since(up) < l.shrink_after);
    if !held || grew_recently {
        return (size, Reason::Steady);
    }
    // Enough servers for the busy ones at a utilization halfway between the SRE's "low" and
    // full (plus one), and at most a quarter fewer per tick.
    let comfortable = (1.0 + l.shrink_utilization) / 2.0;
    let needed = (i.busy / comfortable).ceil() as u32 + 1;
    let floor = size - (size / 4).max(1).min(size);
    let shrunk = needed.max(floor).max(l.min);
    if shrunk < size {
        (shrunk, Reason::LowUtilization)
    } else {
        (size, Reason::Steady)
    }
}

/// Vegas' test of a growth step from `p.from` to `size`: an unsaturated server gives the extra
/// connections extra throughput (when clients were waiting for them); a saturated one gives
/// none and only stretches latency.
fn saturated(p: &Probe, i: &Inputs, size: u32, l: &Limits) -> bool {
    if size <= p.from || p.throughput <= 0.0 {
        return false;
    }
    let expected_gain = p.throughput * f64::from(size - p.from) / f64::from(p.from.max(1));
    let gained = i.throughput - p.throughput;
    let latency_rose = match (p.latency, i.latency) {
        (Some(before), Some(now)) if !before.is_zero() => {
            now.as_secs_f64() / before.as_secs_f64() >= 1.0 + (l.saturation_ratio - 1.0) / 4.0
        }
        _ => false,
    };
    gained < expected_gain * USEFUL_GAIN && latency_rose
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            min: 1,
            max: 50,
            budget: None,
            target_wait: Duration::from_millis(5),
            max_step: 4,
            shrink_utilization: 0.5,
            shrink_after: Duration::from_secs(30),
            saturation_ratio: 2.0,
            ceiling_hold: Duration::from_secs(30),
        }
    }

    fn busy(waiting: u32, busy: f64, tps: f64, latency_ms: u64) -> Inputs {
        Inputs {
            window: Duration::from_secs(1),
            waiting,
            wait_p95: Duration::from_millis(if waiting > 0 { 50 } else { 0 }),
            throughput: tps,
            busy,
            utilization: Some(1.0),
            latency: Some(Duration::from_millis(latency_ms)),
            open: busy as u32,
            ..Inputs::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn demand_grows_by_at_most_the_step_and_never_past_max() {
        let l = limits();
        // 30 clients wait on 2 busy servers and the queue is not shrinking: 32 wanted, one
        // step (max_connects_per_tick = 4) now.
        let mut s = State::new(2);
        let d = decide(&mut s, &busy(30, 2.0, 100.0, 20), &l, Instant::now());
        assert_eq!(
            (d.target, d.direction, d.reason),
            (6, Direction::Up, Reason::Demand)
        );
        assert_eq!(d.wanted, 32);
        // The queue shrinks: Little's law decides (100/s served, the rest draining over four
        // windows, 20 ms each: 3 servers), so the pool grows by one only.
        let d = decide(&mut s, &busy(20, 6.0, 100.0, 20), &l, Instant::now());
        assert_eq!(d.target, 7);
        // 300 queued at 100 ms: far more than one step.
        let mut s = State::new(2);
        let d = decide(&mut s, &busy(300, 2.0, 20.0, 100), &l, Instant::now());
        assert_eq!(d.target, 6, "one step of max_connects_per_tick");
        let mut s = State::new(49);
        let d = decide(&mut s, &busy(30, 49.0, 100.0, 20), &l, Instant::now());
        assert_eq!(d.target, 50);
        let d = decide(&mut s, &busy(30, 50.0, 102.0, 20), &l, Instant::now());
        assert_eq!((d.target, d.reason), (50, Reason::AtLimit));
    }

    #[tokio::test(start_paused = true)]
    async fn a_growth_that_gains_nothing_while_latency_rises_is_undone_and_remembered() {
        let mut s = State::new(4);
        let l = limits();
        let t0 = Instant::now();
        let sec = |n| t0 + Duration::from_secs(n);
        decide(&mut s, &busy(20, 4.0, 200.0, 20), &l, t0);
        assert_eq!(s.target, 8);
        // More connections, the same throughput, twice the latency: saturated, undone.
        let d = decide(&mut s, &busy(20, 5.0, 201.0, 40), &l, sec(1));
        assert_eq!((d.target, d.reason), (4, Reason::Saturated));
        // Then it steps down while that serves as much...
        let d = decide(&mut s, &busy(20, 4.0, 200.0, 20), &l, sec(2));
        assert_eq!((d.target, d.reason), (3, Reason::Saturated));
        // ...and undoes the first step down that loses throughput, and holds there.
        let d = decide(&mut s, &busy(20, 3.0, 150.0, 20), &l, sec(3));
        assert_eq!((d.target, d.reason), (4, Reason::Saturated));
        let d = decide(&mut s, &busy(20, 4.0, 200.0, 20), &l, sec(4));
        assert_eq!((d.target, d.reason), (4, Reason::AtCeiling));
        // The ceiling lapses: the controller probes again.
        let d = decide(&mut s, &busy(20, 4.0, 200.0, 20), &l, sec(40));
        assert_eq!((d.target, d.reason), (8, Reason::Demand));
    }

    #[tokio::test(start_paused = true)]
    async fn a_growth_that_raises_throughput_stands() {
        let mut s = State::new(4);
        let l = limits();
        let t0 = Instant::now();
        decide(&mut s, &busy(20, 4.0, 40.0, 100), &l, t0);
        assert_eq!(s.target, 8);
        // I/O-bound: the same latency, twice the throughput: the growth stands, and goes on.
        let d = decide(
            &mut s,
            &busy(12, 8.0, 80.0, 100),
            &l,
            t0 + Duration::from_secs(1),
        );
        assert_eq!((d.target, d.reason), (9, Reason::Demand));
    }

    #[tokio::test(start_paused = true)]
    async fn connect_failures_halve_and_hold_a_ceiling() {
        let mut s = State::new(20);
        let l = limits();
        let t0 = Instant::now();
        let mut i = busy(10, 20.0, 100.0, 10);
        i.connect_failures = 3;
        let d = decide(&mut s, &i, &l, t0);
        assert_eq!((d.target, d.reason), (10, Reason::ConnectFailures));
        let d = decide(
            &mut s,
            &busy(10, 10.0, 100.0, 10),
            &l,
            t0 + Duration::from_secs(1),
        );
        assert_eq!((d.target, d.reason), (10, Reason::AtCeiling));
        // 53300: half of what is open, not of the target.
        let mut s = State::new(40);
        let mut i = busy(10, 12.0, 100.0, 10);
        (i.connect_failures, i.too_many, i.open) = (1, 1, 12);
        assert_eq!(decide(&mut s, &i, &l, t0).target, 6);
    }

    #[tokio::test(start_paused = true)]
    async fn low_utilization_shrinks_only_after_the_hold_and_gradually() {
        let mut s = State::new(40);
        let l = limits();
        let t0 = Instant::now();
        let quiet = Inputs {
            utilization: Some(0.05),
            busy: 2.0,
            ..Inputs::default()
        };
        for k in 0..30 {
            let d = decide(&mut s, &quiet, &l, t0 + Duration::from_secs(k));
            assert_eq!(d.target, 40, "held at second {k}");
        }
        let d = decide(&mut s, &quiet, &l, t0 + Duration::from_secs(30));
        assert_eq!((d.target, d.reason), (30, Reason::LowUtilization));
        let mut last = 30;
        for at in 31..60 {
            let before = s.target;
            let d = decide(&mut s, &quiet, &l, t0 + Duration::from_secs(at));
            assert!(d.target * 4 >= before * 3 - 3, "at most a quarter per tick");
            if d.direction != Direction::Hold {
                last = at;
            }
        }
        assert_eq!(s.target, 4, "busy 2 at utilization 0.75, plus one");
        assert!(last < 45, "settled after {last} s");
    }

    #[tokio::test(start_paused = true)]
    async fn bounds_and_the_budget_always_hold() {
        let mut s = State::new(30);
        let mut l = limits();
        l.budget = Some(12);
        let d = decide(&mut s, &Inputs::default(), &l, Instant::now());
        assert_eq!((d.target, d.reason), (12, Reason::Bounds));
        l.min = 15;
        let d = decide(&mut s, &Inputs::default(), &l, Instant::now());
        assert_eq!(d.target, 15, "min_size wins over a smaller budget");
    }
}
