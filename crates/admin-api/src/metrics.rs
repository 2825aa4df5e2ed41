//! `GET /metrics`: Prometheus text.
//!
//! Two sources, no name in both:
//! - the `metrics` facade's recorder ([`install_recorder`], the daemon's global one): what
//!   pool-core counts where it happens, rare events only (failures, slow queries, prepared
//!   statement misses, circuit breakers);
//! - pool-core's own lock-free counters and a snapshot, read here at scrape time: sizes,
//!   clients and servers by state, acquire-wait and server-time histograms. The hot path pays
//!   nothing for them: it already does its relaxed atomic adds, and the scrape reads them.
//!
//! docs/metrics.md lists every metric; a test checks the two agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{BuildError, PrometheusBuilder, PrometheusHandle};
use pgtide_pool_core::clients::ClientState;
use pgtide_pool_core::stats::{DurationHist, WAIT_BUCKETS};

use crate::auth::AuthFailure;
use crate::state::AdminState;

/// The content type of Prometheus text exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the global recorder for pool-core's `metrics` facade calls (once per process: the
/// daemon's), with their descriptions.
pub fn install_recorder() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    describe();
    Ok(handle)
}

/// HELP lines for the facade's metrics (emitted by pool-core, named in docs/metrics.md).
fn describe() {
    metrics::describe_counter!(
        "pgtide_failures_total",
        "Failures by pool and failure class (docs/failures.md)."
    );
    metrics::describe_counter!(
        "pgtide_slow_queries_total",
        "Queries and transactions over slow_query_threshold, by kind."
    );
    metrics::describe_counter!(
        "pgtide_prepared_reprepares_total",
        "Named prepared statements prepared again on a server that lacked them."
    );
    metrics::describe_counter!(
        "pgtide_prepared_evictions_total",
        "Prepared statements closed on a server to stay under max_prepared_statements."
    );
    metrics::describe_gauge!(
        "pgtide_prepared_statements",
        "Distinct prepared statements known to the pool."
    );
    metrics::describe_counter!(
        "pgtide_controller_decisions_total",
        "Adaptive controller decisions by pool, direction and reason."
    );
    metrics::describe_gauge!(
        "pgtide_pool_target_size",
        "The adaptive controller's last size target."
    );
    metrics::describe_gauge!(
        "pgtide_budget_connections",
        "The connection budget learned for a server address."
    );
    metrics::describe_gauge!(
        "pgtide_breaker_open",
        "1 while the circuit breaker of a server address is open (clients fail fast)."
    );
}

/// Serves the metrics.
pub async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

/// Prometheus text of everything: the recorder's metrics, then the scrape-time ones.
pub fn render(state: &AdminState) -> String {
    let mut out = String::new();
    if let Some(handle) = state.prometheus() {
        handle.run_upkeep();
        out.push_str(&handle.render());
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
    }
    scrape(state, &mut Text(&mut out));
    out
}

/// A Prometheus text writer.
struct Text<'a>(&'a mut String);

impl Text<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v}")
    }
}

/// Histogram bucket bounds: every other power-of-two bucket of pool-core's histograms, from
/// 16 µs to ~4.2 s (bucket `i` counts durations below 2^i µs).
const BUCKETS: [usize; 10] = [4, 6, 8, 10, 12, 14, 16, 18, 20, 22];

fn histogram(t: &mut Text<'_>, name: &str, pool: &str, buckets: &[u64; WAIT_BUCKETS], sum_ns: u64) {
    let mut cumulative = 0u64;
    let mut next = 0usize;
    let bucket = format!("{name}_bucket");
    for (i, n) in buckets.iter().enumerate() {
        cumulative += n;
        if next < BUCKETS.len() && i == BUCKETS[next] {
            let le = number((1u64 << i) as f64 / 1e6);
            t.sample(&bucket, &[("pool", pool), ("le", &le)], cumulative as f64);
            next += 1;
        }
    }
    t.sample(
        &bucket,
        &[("pool", pool), ("le", "+Inf")],
        cumulative as f64,
    );
    t.sample(
        &format!("{name}_sum"),
        &[("pool", pool)],
        sum_ns as f64 / 1e9,
    );
    t.sample(
        &format!("{name}_count"),
        &[("pool", pool)],
        cumulative as f64,
    );
}

fn hist_of(h: &DurationHist) -> ([u64; WAIT_BUCKETS], u64) {
    (h.histogram(), h.sum_ns.load(Relaxed))
}

/// The scrape-time families, one pass over a snapshot and the pools' counters.
fn scrape(state: &AdminState, t: &mut Text<'_>) {
    let shared = state.proxy().shared();
    let snap = shared.snapshot(u64::MAX);
    let mut pools = shared.pools();
    pools.sort_by(|a, b| a.name().cmp(b.name()));

    t.family(
        "pgtide_info",
        "gauge",
        "Always 1; the version label says which pgtide runs.",
    );
    t.sample(
        "pgtide_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    t.family(
        "pgtide_client_connections",
        "gauge",
        "Client connections open now (logging in or logged in), against max_client_conn.",
    );
    t.sample(
        "pgtide_client_connections",
        &[],
        shared.clients.load(Relaxed) as f64,
    );

    // Clients by pool and state; every pool gets all three states.
    let mut clients: BTreeMap<String, [u64; 3]> = BTreeMap::new();
    for p in &snap.pools {
        clients.entry(p.name.clone()).or_default();
    }
    for c in &snap.clients {
        let e = clients
            .entry(format!("{}/{}", c.info.database, c.info.user))
            .or_default();
        let i = match c.state {
            ClientState::Idle => 0,
            ClientState::Waiting => 1,
            ClientState::Active { .. } => 2,
        };
        e[i] += 1;
    }
    t.family(
        "pgtide_clients",
        "gauge",
        "Logged-in clients by pool and state (idle: between transactions; waiting: queued for a server; active: holding one).",
    );
    for (pool, n) in &clients {
        for (state, v) in ["idle", "waiting", "active"].iter().zip(n) {
            t.sample(
                "pgtide_clients",
                &[("pool", pool), ("state", state)],
                *v as f64,
            );
        }
    }

    t.family(
        "pgtide_servers",
        "gauge",
        "Server connections by pool and state (idle, active: checked out, connecting).",
    );
    for p in &snap.pools {
        t.sample(
            "pgtide_servers",
            &[("pool", &p.name), ("state", "idle")],
            p.idle as f64,
        );
        t.sample(
            "pgtide_servers",
            &[("pool", &p.name), ("state", "active")],
            p.active as f64,
        );
        t.sample(
            "pgtide_servers",
            &[("pool", &p.name), ("state", "connecting")],
            f64::from(p.connecting),
        );
    }

    let sizes: [(&str, &str); 4] = [
        ("pgtide_pool_size_current", "Server connections open or being opened."),
        (
            "pgtide_pool_size_target",
            "The size the pool may reach now: the controller's target inside [min, max], or max_size.",
        ),
        ("pgtide_pool_size_min", "min_size in force."),
        ("pgtide_pool_size_max", "max_size in force."),
    ];
    for (name, help) in sizes {
        t.family(name, "gauge", help);
        for p in &snap.pools {
            let setting = |key: &str| {
                p.limits
                    .iter()
                    .find(|v| v.key == key)
                    .and_then(|v| v.value.as_integer())
                    .unwrap_or(0) as f64
            };
            let v = match name {
                "pgtide_pool_size_current" => f64::from(p.open),
                "pgtide_pool_size_target" => f64::from(p.size),
                "pgtide_pool_size_min" => setting("min_size"),
                _ => setting("max_size"),
            };
            t.sample(name, &[("pool", &p.name)], v);
        }
    }

    t.family(
        "pgtide_pool_waiting_clients",
        "gauge",
        "Clients queued for a server now (also while the pool is paused).",
    );
    for p in &pools {
        t.sample(
            "pgtide_pool_waiting_clients",
            &[("pool", p.name())],
            p.stats.waiting.load(Relaxed) as f64,
        );
    }

    t.family(
        "pgtide_pool_admission",
        "gauge",
        "1 for the pool's admission state (open, paused, draining), 0 for the others.",
    );
    for p in &snap.pools {
        for s in ["open", "paused", "draining"] {
            let v = if p.admission.as_str() == s { 1.0 } else { 0.0 };
            t.sample(
                "pgtide_pool_admission",
                &[("pool", &p.name), ("state", s)],
                v,
            );
        }
    }

    let counters: [(&str, &str); 6] = [
        ("pgtide_acquires_total", "Server checkouts completed."),
        (
            "pgtide_acquire_timeouts_total",
            "Clients that gave up waiting at acquire_timeout (the pool was exhausted).",
        ),
        ("pgtide_server_connects_total", "Server connections opened."),
        (
            "pgtide_server_connect_failures_total",
            "Server connections that failed to open (by class in pgtide_failures_total).",
        ),
        (
            "pgtide_server_closes_total",
            "Server connections closed (idle, expired, broken, surplus).",
        ),
        (
            "pgtide_server_busy_seconds_total",
            "Server time checked out by clients; its rate over open servers is the utilization.",
        ),
    ];
    for (name, help) in counters {
        t.family(name, "counter", help);
        for p in &pools {
            let s = &p.stats;
            let v = match name {
                "pgtide_acquires_total" => s.acquires.load(Relaxed) as f64,
                "pgtide_acquire_timeouts_total" => s.acquire_timeouts.load(Relaxed) as f64,
                "pgtide_server_connects_total" => s.connects.load(Relaxed) as f64,
                "pgtide_server_connect_failures_total" => s.connect_failures.load(Relaxed) as f64,
                "pgtide_server_closes_total" => s.closes.load(Relaxed) as f64,
                _ => s.hold_ns.load(Relaxed) as f64 / 1e9,
            };
            t.sample(name, &[("pool", p.name())], v);
        }
    }

    let histograms: [(&str, &str); 4] = [
        (
            "pgtide_acquire_wait_seconds",
            "Time clients waited for a server (timed-out waits included; connect time excluded).",
        ),
        (
            "pgtide_server_transaction_seconds",
            "Server time per transaction (first byte to the ReadyForQuery that ends it, without client think time).",
        ),
        (
            "pgtide_server_query_seconds",
            "Server time per round trip (a Query, or extended messages up to their Sync).",
        ),
        (
            "pgtide_server_connect_seconds",
            "Time to open a server connection (TCP, TLS, authentication), successful ones.",
        ),
    ];
    for (name, help) in histograms {
        t.family(name, "histogram", help);
        for p in &pools {
            let s = &p.stats;
            let (buckets, sum) = match name {
                "pgtide_acquire_wait_seconds" => {
                    (s.wait_histogram(), s.acquire_wait_ns.load(Relaxed))
                }
                "pgtide_server_transaction_seconds" => hist_of(&s.server_tx),
                "pgtide_server_query_seconds" => hist_of(&s.server_query),
                _ => hist_of(&s.connect),
            };
            histogram(t, name, p.name(), &buckets, sum);
        }
    }

    t.family(
        "pgtide_admin_auth_failures_total",
        "counter",
        "Admin API requests refused, by reason (missing token, invalid token, forbidden: a viewer token on a write).",
    );
    for why in AuthFailure::ALL {
        t.sample(
            "pgtide_admin_auth_failures_total",
            &[("reason", why.as_str())],
            state.auth_failures().get(why) as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_at_inf() {
        let mut b = [0u64; WAIT_BUCKETS];
        b[5] = 3; // 16..32 µs
        b[23] = 1; // over 4.2 s
        let mut s = String::new();
        histogram(&mut Text(&mut s), "x_seconds", "a/b", &b, 5_000_000_000);
        assert!(
            s.contains("x_seconds_bucket{pool=\"a/b\",le=\"0.000016\"} 0\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{pool=\"a/b\",le=\"0.000064\"} 3\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{pool=\"a/b\",le=\"4.194304\"} 3\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{pool=\"a/b\",le=\"+Inf\"} 4\n"),
            "{s}"
        );
        assert!(s.contains("x_seconds_sum{pool=\"a/b\"} 5\n"), "{s}");
        assert!(s.contains("x_seconds_count{pool=\"a/b\"} 4\n"), "{s}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
