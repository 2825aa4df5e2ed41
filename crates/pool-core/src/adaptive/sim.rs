//! A deterministic simulation of a pool in front of a database, in virtual time, to test the
//! controller (`decide`) against fixed pool sizes under the same seeded workload.
//!
//! The model, stepped every millisecond:
//! - **arrivals**: Poisson per phase (seeded xorshift), each transaction needing `cpu_ms` of CPU
//!   then `io_ms` of waiting that uses no CPU (I/O, locks, `pg_sleep`);
//! - **the pool**: at most `size` servers; a transaction waits FIFO for a free open server and
//!   gives up after `acquire_timeout`; a missing server is opened when a client waits, ready after
//!   `connect_ms` (or failing, in a failure window), at most `size` open; idle servers above
//!   `size` are closed;
//! - **the database**: `cores` CPUs shared equally by the transactions in their CPU part
//!   (processor sharing), slowed further when far more transactions are active than cores
//!   (`contention`: context switches, lock and buffer contention);
//! - **signals** each tick (1 s) as the pool measures them: waiting now, acquire-wait p95 with
//!   timed-out waits, throughput, time-weighted busy servers and utilization, mean server time.

use std::collections::VecDeque;
use std::time::Duration;

use super::decide::{decide, Direction, Inputs, Limits, State};
use crate::clock::Instant;

/// One workload phase.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Length, in seconds.
    pub secs: u32,
    /// Arrivals per second.
    pub rate: f64,
    /// CPU per transaction, ms.
    pub cpu_ms: f64,
    /// Non-CPU time per transaction, ms.
    pub io_ms: f64,
}

/// The database and the pool's fixed parameters.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub cores: f64,
    /// Throughput lost per active transaction beyond twice the cores, relative to the cores.
    pub contention: f64,
    pub connect_ms: u32,
    pub acquire_timeout_ms: u32,
    /// Connects fail while `failing.0 <= second < failing.1`.
    pub failing: (u32, u32),
}

impl Default for Model {
    fn default() -> Self {
        Model {
            cores: 4.0,
            contention: 0.15,
            connect_ms: 20,
            acquire_timeout_ms: 5000,
            failing: (0, 0),
        }
    }
}

/// How the pool is sized.
#[derive(Debug, Clone, Copy)]
pub enum Sizing {
    Fixed(u32),
    Adaptive(Limits),
}

/// What one second looked like.
#[derive(Debug, Clone, Copy, Default)]
pub struct Second {
    pub size: u32,
    pub open: u32,
    pub completed: u64,
    pub timeouts: u64,
    pub wait_p95_ms: f64,
    pub connects: u32,
    pub direction: Option<Direction>,
}

/// A whole run.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub seconds: Vec<Second>,
    /// Total latency (wait + server) of completed transactions, ms, with the second they ended.
    pub latencies: Vec<(u32, f64)>,
}

impl Run {
    /// Completed per second over seconds `[from, to)`.
    pub fn throughput(&self, from: u32, to: u32) -> f64 {
        let n: u64 = self.seconds[from as usize..to as usize]
            .iter()
            .map(|s| s.completed)
            .sum();
        n as f64 / f64::from(to - from)
    }

    /// Latency percentile (ms) of transactions that ended in `[from, to)`.
    pub fn latency(&self, from: u32, to: u32, q: f64) -> f64 {
        let mut v: Vec<f64> = self
            .latencies
            .iter()
            .filter(|(s, _)| *s >= from && *s < to)
            .map(|(_, l)| *l)
            .collect();
        percentile(&mut v, q)
    }

    /// Acquire timeouts in `[from, to)`.
    pub fn timeouts(&self, from: u32, to: u32) -> u64 {
        self.seconds[from as usize..to as usize]
            .iter()
            .map(|s| s.timeouts)
            .sum()
    }
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

struct Tx {
    arrived: u64,
    started: u64,
    cpu: f64,
    io: f64,
}

/// A tiny seeded generator: the same seed, the same workload, for every sizing compared.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Runs `phases` with `sizing`; `seed` fixes the arrivals.
pub async fn run(model: Model, phases: &[Phase], sizing: Sizing, seed: u64) -> Run {
    let mut rng = XorShift(seed.max(1));
    let total_ms: u64 = phases.iter().map(|p| u64::from(p.secs) * 1000).sum();
    let mut out = Run::default();
    let (mut state, limits, mut size) = match sizing {
        Sizing::Fixed(n) => (None, None, n),
        Sizing::Adaptive(l) => {
            let start = super::decide::start_size(&l, 0);
            (Some(State::new(start)), Some(l), start)
        }
    };
    let mut queue: VecDeque<u64> = VecDeque::new();
    let mut active: Vec<Tx> = Vec::new();
    let mut open: u32 = 0;
    let mut connecting: VecDeque<u64> = VecDeque::new();
    // Per-second accumulators.
    let (mut completed, mut timeouts, mut acquires, mut connects) = (0u64, 0u64, 0u64, 0u32);
    let mut waits: Vec<f64> = Vec::new();
    let (mut busy_ms, mut open_ms, mut server_ms, mut server_n) = (0f64, 0f64, 0f64, 0u64);
    let mut next_arrival = 0.0f64;
    let epoch = Instant::now();
    for now in 0..total_ms {
        let second = (now / 1000) as u32;
        let phase = phase_at(phases, now);
        // Arrivals.
        while next_arrival <= now as f64 {
            queue.push_back(now);
            let gap = -(1.0 - rng.next()).ln() / phase.rate * 1000.0;
            next_arrival += gap.max(0.001);
        }
        // Connects finishing.
        while connecting.front().is_some_and(|at| *at <= now) {
            connecting.pop_front();
            open += 1;
        }
        // Give up on the oldest waiters past the timeout.
        while queue
            .front()
            .is_some_and(|a| now - a >= u64::from(model.acquire_timeout_ms))
        {
            queue.pop_front();
            timeouts += 1;
            waits.push(f64::from(model.acquire_timeout_ms));
        }
        // Start waiting transactions on free servers.
        while !queue.is_empty() && (active.len() as u32) < open.min(size) {
            let arrived = queue.pop_front().unwrap_or(now);
            waits.push((now - arrived) as f64);
            acquires += 1;
            active.push(Tx {
                arrived,
                started: now,
                cpu: phase.cpu_ms,
                io: phase.io_ms,
            });
        }
        // Open servers for waiting clients, within the size.
        let failing = second >= model.failing.0 && second < model.failing.1;
        while !queue.is_empty() && open + (connecting.len() as u32) < size {
            connects += 1;
            if failing {
                break;
            }
            connecting.push_back(now + u64::from(model.connect_ms));
        }
        // Close idle servers above the size.
        let idle = open.saturating_sub(active.len() as u32);
        if open > size {
            open -= (open - size).min(idle);
        }
        // The database: processor sharing among CPU parts, with contention.
        let n_cpu = active.iter().filter(|t| t.cpu > 0.0).count() as f64;
        let n_all = active.len() as f64;
        let excess = (n_all - 2.0 * model.cores).max(0.0) / model.cores;
        let efficiency = 1.0 / (1.0 + model.contention * excess);
        let share = if n_cpu > 0.0 {
            (model.cores / n_cpu).min(1.0) * efficiency
        } else {
            0.0
        };
        busy_ms += n_all;
        open_ms += f64::from(open);
        active.retain_mut(|t| {
            if t.cpu > 0.0 {
                t.cpu -= share;
            } else {
                t.io -= 1.0;
            }
            let done = t.cpu <= 0.0 && t.io <= 0.0;
            if done {
                completed += 1;
                let server = (now + 1 - t.started) as f64;
                server_ms += server;
                server_n += 1;
                out.latencies.push((second, (now + 1 - t.arrived) as f64));
            }
            !done
        });
        // The tick.
        if (now + 1) % 1000 == 0 {
            let wait_p95 = percentile(&mut waits, 0.95);
            let mut direction = None;
            if let (Some(st), Some(l)) = (state.as_mut(), limits.as_ref()) {
                let i = Inputs {
                    window: Duration::from_secs(1),
                    waiting: queue.len() as u32,
                    wait_p95: Duration::from_secs_f64(wait_p95 / 1000.0),
                    timeouts,
                    throughput: acquires as f64,
                    busy: busy_ms / 1000.0,
                    utilization: (open_ms > 0.0).then(|| (busy_ms / open_ms).min(1.0)),
                    latency: (server_n > 0)
                        .then(|| Duration::from_secs_f64(server_ms / server_n as f64 / 1000.0)),
                    connect_failures: if failing { u64::from(connects) } else { 0 },
                    too_many: 0,
                    open,
                };
                let at = epoch + Duration::from_millis(now + 1);
                let d = decide(st, &i, l, at);
                size = d.target;
                direction = Some(d.direction);
            }
            out.seconds.push(Second {
                size,
                open,
                completed,
                timeouts,
                wait_p95_ms: wait_p95,
                connects,
                direction,
            });
            (completed, timeouts, acquires, connects) = (0, 0, 0, 0);
            waits.clear();
            (busy_ms, open_ms, server_ms, server_n) = (0.0, 0.0, 0.0, 0);
        }
    }
    out
}

fn phase_at(phases: &[Phase], ms: u64) -> Phase {
    let mut end = 0u64;
    for p in phases {
        end += u64::from(p.secs) * 1000;
        if ms < end {
            return *p;
        }
    }
    *phases.last().expect("at least one phase")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(min: u32, max: u32) -> Limits {
        Limits {
            min,
            max,
            budget: None,
            target_wait: Duration::from_millis(5),
            max_step: 8,
            shrink_utilization: 0.5,
            shrink_after: Duration::from_secs(10),
            saturation_ratio: 2.0,
            ceiling_hold: Duration::from_secs(30),
        }
    }

    const LIGHT: Phase = Phase {
        secs: 40,
        rate: 20.0,
        cpu_ms: 1.0,
        io_ms: 10.0,
    };

    /// Changes of direction (up after down, down after up).
    fn reversals(r: &Run) -> usize {
        let moves: Vec<Direction> = r
            .seconds
            .iter()
            .filter_map(|s| s.direction.filter(|d| *d != Direction::Hold))
            .collect();
        moves.windows(2).filter(|w| w[0] != w[1]).count()
    }

    /// `PGTIDE_SIM_TRACE=1 cargo test -p pgtide-pool-core sim -- --nocapture` prints runs.
    fn trace(name: &str, r: &Run) {
        if std::env::var_os("PGTIDE_SIM_TRACE").is_some() {
            for (i, s) in r.seconds.iter().enumerate() {
                eprintln!("{name} {i:3}s size {:3} open {:3} done {:4} timeouts {:3} p95 {:7.1} ms connects {:2} {:?}", s.size, s.open, s.completed, s.timeouts, s.wait_p95_ms, s.connects, s.direction);
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn steady_light_load_settles_at_what_it_needs_plus_a_margin() {
        let r = run(
            Model::default(),
            &[LIGHT],
            Sizing::Adaptive(limits(1, 50)),
            7,
        )
        .await;
        trace("light", &r);
        let last = r.seconds.last().unwrap();
        assert!(last.size <= 3, "settled at {}", last.size);
        assert_eq!(r.timeouts(0, 40), 0);
        // No oscillation: after the cold start the size only goes down, to where it stays.
        assert!(reversals(&r) <= 1, "{} reversals", reversals(&r));
        assert!(r.seconds[2..]
            .iter()
            .all(|s| s.direction != Some(Direction::Up)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_io_bound_spike_grows_the_pool_and_waits_recover_within_seconds() {
        let spike = Phase {
            secs: 40,
            rate: 400.0,
            cpu_ms: 0.2,
            io_ms: 100.0,
        };
        let r = run(
            Model::default(),
            &[LIGHT, spike],
            Sizing::Adaptive(limits(1, 80)),
            11,
        )
        .await;
        trace("spike", &r);
        // 400/s × 0.1 s = 40 busy servers needed; more for a while, to drain the backlog the
        // spike built while the pool grew (the growth is one step per second).
        let peak = r.seconds.iter().map(|s| s.size).max().unwrap();
        assert!((40..=70).contains(&peak), "peak {peak}");
        assert!(r.seconds[45..80].iter().all(|s| s.timeouts == 0));
        let recovered = (40..80)
            .find(|&s| r.seconds[s as usize].wait_p95_ms <= 5.0 && r.seconds[s as usize].size >= 40)
            .expect("acquire p95 back under the target");
        // Bounded by the connect rate: 40 servers at 8 per second is 5 s, then the queue the
        // spike built in those seconds drains.
        assert!(
            recovered - 40 <= 15,
            "recovered {} s after the spike",
            recovered - 40
        );
        // The connect rate stays within the bound (plus the client-driven refills).
        assert!(
            r.seconds.iter().all(|s| s.connects <= 2 * 8 + 8),
            "{:?}",
            r.seconds
        );
        let fixed = run(Model::default(), &[LIGHT, spike], Sizing::Fixed(80), 11).await;
        let (a, f) = (r.throughput(50, 80), fixed.throughput(50, 80));
        assert!(a >= 0.95 * f, "adaptive {a:.0}/s, max_size {f:.0}/s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cpu_saturated_database_does_not_get_more_connections_than_help() {
        // 4 cores, 10 ms of CPU each: at most 400/s; 370/s arrive.
        let cpu = Phase {
            secs: 90,
            rate: 370.0,
            cpu_ms: 10.0,
            io_ms: 0.0,
        };
        let model = Model::default();
        let adaptive = run(model, &[cpu], Sizing::Adaptive(limits(1, 64)), 3).await;
        trace("cpu", &adaptive);
        let mut best = 0.0f64;
        let mut max_p99 = 0.0;
        for n in [2u32, 4, 6, 8, 12, 16, 32, 64] {
            let f = run(model, &[cpu], Sizing::Fixed(n), 3).await;
            best = best.max(f.throughput(30, 90));
            if n == 64 {
                max_p99 = f.latency(30, 90, 0.99);
            }
        }
        let tput = adaptive.throughput(30, 90);
        assert!(
            tput >= 0.95 * best,
            "adaptive {tput:.0}/s, best fixed {best:.0}/s"
        );
        let p99 = adaptive.latency(30, 90, 0.99);
        assert!(
            p99 < max_p99,
            "p99 adaptive {p99:.0} ms, max_size {max_p99:.0} ms"
        );
        let peak = adaptive.seconds.iter().map(|s| s.size).max().unwrap();
        assert!(peak <= 24, "grew to {peak} on a 4-core database");
    }

    #[tokio::test(start_paused = true)]
    async fn when_load_drops_the_size_returns_to_min_size() {
        let busy = Phase {
            secs: 20,
            rate: 300.0,
            cpu_ms: 0.5,
            io_ms: 50.0,
        };
        let idle = Phase {
            secs: 30,
            rate: 0.5,
            cpu_ms: 0.5,
            io_ms: 5.0,
        };
        let r = run(
            Model::default(),
            &[busy, idle],
            Sizing::Adaptive(limits(2, 60)),
            5,
        )
        .await;
        assert!(r.seconds[19].size >= 15, "grew for the busy phase");
        // Shrinking starts after shrink_after (10 s) of low utilization, a quarter per tick.
        let back = (20..50)
            .find(|&s| r.seconds[s as usize].size == 2)
            .expect("back to min_size");
        assert!(back <= 20 + 10 + 10, "back at {back} s");
    }

    #[tokio::test(start_paused = true)]
    async fn connect_failures_back_off_and_the_pool_recovers() {
        let io = Phase {
            secs: 80,
            rate: 200.0,
            cpu_ms: 0.2,
            io_ms: 50.0,
        };
        let model = Model {
            failing: (20, 30),
            ..Model::default()
        };
        let r = run(model, &[io], Sizing::Adaptive(limits(1, 40)), 9).await;
        let before = r.seconds[19].size;
        assert!(before >= 10, "{before}");
        let low = r.seconds[20..30].iter().map(|s| s.size).min().unwrap();
        assert!(low * 10 <= before * 6, "backed off to {low} from {before}");
        // Never more connect attempts in a second than the step allows, failing or not.
        assert!(
            r.seconds.iter().all(|s| s.connects <= 3 * 8),
            "{:?}",
            r.seconds
        );
        // Recovery after the ceiling lapses.
        assert!(
            r.seconds[79].size >= 10,
            "recovered to {}",
            r.seconds[79].size
        );
        assert!(r.seconds[70..80].iter().all(|s| s.wait_p95_ms <= 5.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_target_never_leaves_its_bounds() {
        let phases = [
            LIGHT,
            Phase {
                secs: 20,
                rate: 800.0,
                cpu_ms: 2.0,
                io_ms: 30.0,
            },
            LIGHT,
        ];
        for seed in 1..4 {
            let r = run(
                Model::default(),
                &phases,
                Sizing::Adaptive(limits(3, 30)),
                seed,
            )
            .await;
            assert!(r.seconds.iter().all(|s| (3..=30).contains(&s.size)));
            assert!(r.seconds.iter().all(|s| s.open <= 30));
        }
    }
}
