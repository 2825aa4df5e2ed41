#!/usr/bin/env python3
"""Report generation for benches/compare.sh (stdlib only).

Two subcommands:

    report.py latency FILE...
        Reads pgbench per-transaction logs (`pgbench --log`: one file per thread, the 3rd field
        of each line is the transaction's latency in microseconds) and prints one line:
            <avg> <p50> <p90> <p99> <p99.9> <transactions>
        in microseconds (nearest-rank percentiles), or exits 1 when no transaction was logged.

    report.py report WORKDIR --md FILE [--json FILE]
        Reads the files compare.sh wrote into WORKDIR (meta.tsv, scenarios.tsv, results.tsv,
        idle.tsv, pgbouncer-prepared.tsv) and writes the markdown report and the JSON document.
"""

import argparse
import json
import math
import statistics
import sys

TARGETS = ("direct", "pgbouncer", "pgtide", "floor")
POOLERS = ("pgbouncer", "pgtide")
# Processes whose own CPU is measured: the poolers and the floor relay (benches/relay_floor.rs).
PROXIES = POOLERS + ("floor",)
LAT_KEYS = ("avg", "p50", "p90", "p99", "p99.9")


# ------------------------------------------------------------------ latency
def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_main(files):
    values = []
    for name in files:
        with open(name) as f:
            for line in f:
                fields = line.split()
                # client_id transaction_no time script_no time_epoch time_us [schedule_lag];
                # "failed"/"skipped" instead of a number for transactions that did not complete.
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
    if not values:
        print("report.py latency: no transaction in " + " ".join(files), file=sys.stderr)
        return 1
    values.sort()
    avg = sum(values) / len(values)
    pcts = [percentile(values, p) for p in (50, 90, 99, 99.9)]
    print(f"{avg:.1f} " + " ".join(str(v) for v in pcts) + f" {len(values)}")
    return 0


# ------------------------------------------------------------------ reading compare.sh's files
def read_tsv(path):
    try:
        with open(path) as f:
            return [line.rstrip("\n").split("\t") for line in f if line.strip()]
    except FileNotFoundError:
        return []


def num(v, kind=float):
    return None if v in ("", "-", None) else kind(v)


def load(workdir):
    meta = {k: v for k, v in (row[:2] for row in read_tsv(f"{workdir}/meta.tsv") if len(row) >= 2)}
    scenarios = []
    for sid, flags, clients, kind, threads in read_tsv(f"{workdir}/scenarios.tsv"):
        scenarios.append(
            {"id": sid, "flags": flags, "clients": int(clients), "kind": kind, "threads": int(threads)}
        )
    runs = []
    for row in read_tsv(f"{workdir}/results.tsv"):
        (sid, target, rnd, status, tps, tx, cpu, mcpu, conn_ms, l_avg, l50, l90, l99, l999, l_n, detail) = row
        runs.append(
            {
                "scenario": sid,
                "target": target,
                "round": int(rnd),
                "ok": status == "ok",
                "tps": num(tps),
                "transactions": num(tx, int),
                "cpu_seconds": num(cpu),
                "machine_cpu_seconds": num(mcpu),
                "avg_connection_ms": num(conn_ms),
                "latency_us": None
                if l_n in ("", "-")
                else dict(zip(LAT_KEYS + ("transactions",), (float(l_avg), int(l50), int(l90), int(l99), int(l999), int(l_n)))),
                "failure": None if detail in ("", "-") else detail,
            }
        )
    idle = []
    for row in read_tsv(f"{workdir}/idle.tsv"):
        target, ok, failed, before, after, secs, note = row
        ok, failed, before, after = int(ok), int(failed), int(before), int(after)
        idle.append(
            {
                "target": target,
                "clients_requested": int(meta.get("idle_n", "0")),
                "opened": ok,
                "failed": failed,
                "vmrss_before_kib": before,
                "vmrss_after_kib": after,
                "kib_per_client": round((after - before) / ok, 3) if ok else None,
                "seconds_to_open": num(secs),
                "note": None if note in ("", "-") else note,
            }
        )
    prepared = [{"clients": int(c), "verdict": v} for c, v in read_tsv(f"{workdir}/pgbouncer-prepared.tsv")]
    return meta, scenarios, runs, idle, prepared


# ------------------------------------------------------------------ aggregation
def short_failure(text):
    """The table's short form of a failure line: from FATAL:/ERROR: on if present."""
    if not text:
        return "failed"
    for marker in ("FATAL:", "ERROR:"):
        i = text.find(marker)
        if i >= 0:
            return "failed: " + " ".join(text[i:].split())
    return "failed: " + text


def build(meta, scenarios, runs, idle, prepared):
    direct_slots = int(meta.get("direct_slots", "0") or 0)
    cells = []
    by_key = {}
    for sc in scenarios:
        for target in TARGETS:
            rs = sorted((r for r in runs if r["scenario"] == sc["id"] and r["target"] == target), key=lambda r: r["round"])
            if not rs:
                continue
            ok = [r for r in rs if r["ok"]]
            cell = {
                "scenario": sc["id"],
                "pgbench_flags": f"-n {sc['flags']} -c {sc['clients']} -j {sc['threads']} -T {meta.get('duration')}"
                + (" --log" if sc["kind"] == "latency" else ""),
                "clients": sc["clients"],
                "target": target,
                "rounds": [
                    {
                        "round": r["round"],
                        "tps": r["tps"] if r["ok"] else None,
                        "transactions": r["transactions"] if r["ok"] else None,
                        "pooler_cpu_seconds": r["cpu_seconds"],
                        "machine_cpu_seconds": r["machine_cpu_seconds"],
                        "failed": None if r["ok"] else "failed: " + (r["failure"] or "unknown"),
                        **({"latency_us": r["latency_us"]} if r["latency_us"] else {}),
                        **({"avg_connection_ms": r["avg_connection_ms"]} if r["avg_connection_ms"] is not None else {}),
                    }
                    for r in rs
                ],
                "median_tps": statistics.median(r["tps"] for r in ok) if ok else None,
                "rounds_failed": len(rs) - len(ok),
                "verdict": "ok" if len(ok) == len(rs) else (short_failure(next(r["failure"] for r in rs if not r["ok"])) if not ok else f"{len(rs) - len(ok)} of {len(rs)} rounds failed"),
                "failure_expected": target == "direct" and direct_slots > 0 and sc["clients"] > direct_slots,
            }
            if not ok:
                cell["failure"] = "failed: " + (next(r["failure"] for r in rs if not r["ok"]) or "unknown")
            mtx = sum(r["transactions"] for r in ok if r["machine_cpu_seconds"] is not None and r["transactions"])
            mcpu = sum(r["machine_cpu_seconds"] for r in ok if r["machine_cpu_seconds"] is not None and r["transactions"])
            cell["machine_cpu_us_per_tx"] = round(mcpu / mtx * 1e6, 1) if mtx else None
            if target in PROXIES:
                cpu = sum(r["cpu_seconds"] for r in ok if r["cpu_seconds"] is not None)
                tx = sum(r["transactions"] for r in ok if r["cpu_seconds"] is not None and r["transactions"])
                cell["pooler_cpu_s_per_10k_tx"] = round(cpu / tx * 10_000, 4) if tx else None
                if sc["kind"] == "churn":
                    # pgbench -C: every transaction is a new client connection.
                    cell["connections"] = tx
                    cell["pooler_cpu_s_per_10k_connections"] = cell["pooler_cpu_s_per_10k_tx"]
            if sc["kind"] == "churn":
                conn = [r["avg_connection_ms"] for r in ok if r["avg_connection_ms"] is not None]
                cell["median_avg_connection_ms"] = statistics.median(conn) if conn else None
            if sc["kind"] == "latency":
                lats = [r["latency_us"] for r in ok if r["latency_us"]]
                cell["latency_us"] = (
                    {k: round(statistics.median(l[k] for l in lats), 1) for k in LAT_KEYS} if lats else None
                )
            cells.append(cell)
            by_key[(sc["id"], target)] = cell

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b else None

    ratios = []
    for sc in scenarios:
        med = {t: by_key.get((sc["id"], t), {}).get("median_tps") for t in TARGETS}
        if not any(v is not None for v in med.values()):
            continue
        ratios.append(
            {
                "scenario": sc["id"],
                "clients": sc["clients"],
                "pgtide_over_pgbouncer": ratio(med["pgtide"], med["pgbouncer"]),
                "pgtide_over_direct": ratio(med["pgtide"], med["direct"]),
            }
        )

    latency = None
    lat_sc = next((sc for sc in scenarios if sc["kind"] == "latency"), None)
    if lat_sc:
        per = {t: by_key.get((lat_sc["id"], t), {}).get("latency_us") for t in TARGETS}
        added = {}
        for t in PROXIES:
            if per.get(t) and per.get("direct"):
                added[f"{t}_minus_direct"] = {k: round(per[t][k] - per["direct"][k], 1) for k in LAT_KEYS}
        latency = {"scenario": lat_sc["id"], "median_us": {t: v for t, v in per.items() if v}, "added_us": added}

    floor = []
    for sc in scenarios:
        f = by_key.get((sc["id"], "floor"))
        if not f:
            continue
        cell = lambda t: by_key.get((sc["id"], t)) or {}
        med = {t: cell(t).get("median_tps") for t in TARGETS}
        cpu = {t: cell(t).get("pooler_cpu_s_per_10k_tx") for t in PROXIES}
        floor.append(
            {
                "scenario": sc["id"],
                "clients": sc["clients"],
                "median_tps": med,
                "over_direct": {t: ratio(med[t], med["direct"]) for t in PROXIES},
                "cpu_us_per_tx": {t: round(v * 100, 1) if v is not None else None for t, v in cpu.items()},
                "floor_cpu_over_pgbouncer": ratio(cpu["floor"], cpu["pgbouncer"]),
                "pgtide_cpu_over_floor": ratio(cpu["pgtide"], cpu["floor"]),
            }
        )

    # What the floor implies for the busy scenarios: on a CPU-bound machine tps follows the
    # machine's CPU per transaction. A pooler costing what the floor relay costs per transaction
    # (its median over the floor cells) instead of what PgBouncer costs, everything else as in
    # PgBouncer's cell, would reach at most M / (M - pgbouncer + floor) x PgBouncer's tps.
    floor_costs = [x["cpu_us_per_tx"]["floor"] for x in floor if x["cpu_us_per_tx"]["floor"] is not None]
    floor_us = statistics.median(floor_costs) if floor_costs else None
    bounds = []
    for sc in scenarios:
        pgb = by_key.get((sc["id"], "pgbouncer")) or {}
        m, own = pgb.get("machine_cpu_us_per_tx"), pgb.get("pooler_cpu_s_per_10k_tx")
        if floor_us is None or m is None or own is None or sc["kind"] == "churn":
            continue
        own_us = own * 100
        bounds.append(
            {
                "scenario": sc["id"],
                "clients": sc["clients"],
                "machine_cpu_us_per_tx": m,
                "pgbouncer_cpu_us_per_tx": round(own_us, 1),
                "floor_cpu_us_per_tx": floor_us,
                "max_tps_over_pgbouncer": round(m / (m - own_us + floor_us), 3) if m - own_us + floor_us > 0 else None,
                "max_tps_over_pgbouncer_zero_cost": round(m / (m - own_us), 3) if m > own_us else None,
            }
        )

    pooler_failures = [c for c in cells if c["target"] in POOLERS and c["rounds_failed"]]
    unexpected_direct = [c for c in cells if c["target"] == "direct" and c["rounds_failed"] and not c["failure_expected"]]
    return cells, by_key, ratios, latency, pooler_failures, unexpected_direct, floor, bounds


# ------------------------------------------------------------------ markdown
def fmt_tps(v):
    return f"{v:,.0f}" if v is not None else "n/a"


def fmt_ratio(v):
    return f"{v:.2f}" if v is not None else "n/a"


def fmt_us(v, key, sign=""):
    """Microseconds: the average with one decimal, percentiles (whole µs in the log) without."""
    return f"{v:{sign},.1f}" if key == "avg" else f"{v:{sign},.0f}"


def label(sc):
    return sc["flags"]


def markdown(meta, scenarios, cells, by_key, ratios, latency, idle, prepared, pooler_failures, unexpected_direct, floor, bounds):
    out = []
    p = out.append
    rounds, duration, idle_n = meta.get("rounds"), meta.get("duration"), meta.get("idle_n")
    p(f"# pgtide comparison ({meta.get('mode')} mode: {rounds} round{'' if rounds == '1' else 's'} x {duration}s per cell, "
      f"{idle_n} idle clients)")
    p("")
    p(f"- date: {meta.get('date')}")
    p(f"- machine: {meta.get('cpus')} CPUs ({meta.get('cpu_model')}), {meta.get('mem_gib')} GiB RAM")
    p(f"- load average before/after the pgbench rounds: {meta.get('load_before')} / {meta.get('load_after')}")
    p(f"- pgtide: {meta.get('pgtide_version')} ({meta.get('pgtide_build')}); PostgreSQL {meta.get('postgresql')}; "
      f"{meta.get('pgbouncer')}; {meta.get('pgbench')}")
    p(f"- PostgreSQL tuned for benchmarking: {meta.get('pg_settings')}; max_connections {meta.get('max_connections')}, "
      f"so direct clients get {meta.get('direct_slots')} slots beside the superuser reserve and the poolers' "
      f"server connections; client authentication trust on all three targets")
    p(f"- pools: {meta.get('pool_size')} server connections (pgtide pool.max_size, PgBouncer default_pool_size), "
      f"transaction mode; pgbench -n -T {duration} -j {meta.get('threads')} (-j 1 at 1 client), scale 1, "
      f"targets interleaved (direct, pgbouncer, pgtide, then the floor relay where it is measured) within each round")
    p(f"- pgtide settings: {meta.get('pgtide_sets')}")
    if meta.get("workers"):
        p(f"- pgtide workers (pgtide.workers): {meta.get('workers')}")
    p("- adaptive: pgtide runs with pool.adaptive.enabled=false only. adaptive=on is not measured: the adaptive "
      "sizing controller is not built yet, so the key currently changes nothing.")
    p("")
    if not cells:
        p("(no pgbench rounds)")
        p("")

    # Throughput.
    if cells:
        p("## Throughput (median tps of the rounds)")
        p("")
        p("| scenario | clients | direct | pgbouncer | pgtide | pgtide/direct | pgtide/pgbouncer |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        rat = {r["scenario"]: r for r in ratios}
        for sc in scenarios:
            row = []
            for t in TARGETS[:3]:
                c = by_key.get((sc["id"], t))
                if c is None:
                    row.append("see below" if (sc["kind"] == "prepared" and t == "pgbouncer" and prepared) else "n/a")
                elif c["median_tps"] is None:
                    row.append(c["verdict"] + (" (expected)" if c["failure_expected"] else ""))
                else:
                    v = fmt_tps(c["median_tps"])
                    if c["rounds_failed"]:
                        v += f" ({c['rounds_failed']} rounds failed)"
                    row.append(v)
            if not any(by_key.get((sc["id"], t)) for t in TARGETS[:3]):
                continue
            r = rat.get(sc["id"], {})
            name = label(sc) + (" (latency run)" if sc["kind"] == "latency" else "")
            p(f"| {name} | {sc['clients']} | {row[0]} | {row[1]} | {row[2]} | "
              f"{fmt_ratio(r.get('pgtide_over_direct'))} | {fmt_ratio(r.get('pgtide_over_pgbouncer'))} |")
        p("")
        p("Each round's tps per cell:")
        p("")
        for sc in scenarios:
            parts = []
            for t in TARGETS:
                c = by_key.get((sc["id"], t))
                if c:
                    parts.append(f"{t} " + ", ".join(
                        fmt_tps(r["tps"]) if r["tps"] is not None else "failed" for r in c["rounds"]))
            if parts:
                p(f"- {label(sc)}, {sc['clients']} client{'s' if sc['clients'] != 1 else ''}: " + "; ".join(parts))
        p("")

        # CPU.
        p("## Pooler CPU (user+system seconds per 10,000 transactions, /proc/PID/stat)")
        p("")
        p("| scenario | clients | pgbouncer | pgtide | pgtide/pgbouncer |")
        p("|---|---:|---:|---:|---:|")
        for sc in scenarios:
            per = {t: (by_key.get((sc["id"], t)) or {}).get("pooler_cpu_s_per_10k_tx") for t in POOLERS}
            if not any(by_key.get((sc["id"], t)) for t in POOLERS):
                continue
            r = per["pgtide"] / per["pgbouncer"] if per["pgtide"] is not None and per["pgbouncer"] else None
            name = label(sc) + {"churn": " (a connection per transaction)", "latency": " (latency run)"}.get(sc["kind"], "")
            f3 = lambda v: f"{v:.3f}" if v is not None else "n/a"
            p(f"| {name} | {sc['clients']} | {f3(per['pgbouncer'])} | {f3(per['pgtide'])} | {fmt_ratio(r)} |")
        p("")
        churn = [sc for sc in scenarios if sc["kind"] == "churn"]
        for sc in churn:
            parts = []
            for t in TARGETS:
                c = by_key.get((sc["id"], t)) or {}
                v = c.get("median_avg_connection_ms")
                if v is not None:
                    parts.append(f"{t} {v:.3f} ms")
            if parts:
                p(f"Connection churn ({label(sc)}, {sc['clients']} clients), pgbench's average connection time: "
                  + "; ".join(parts) + ".")
                p("")

    # Machine CPU.
    if any(c.get("machine_cpu_us_per_tx") is not None for c in cells):
        p("## Machine CPU per transaction (every process, µs; busy time in /proc/stat)")
        p("")
        p("On a machine where pgbench, PostgreSQL and the pooler share the cores, throughput follows this figure.")
        p("")
        p("| scenario | clients | direct | pgbouncer | pgtide | floor |")
        p("|---|---:|---:|---:|---:|---:|")
        for sc in scenarios:
            vals = [(by_key.get((sc["id"], t)) or {}).get("machine_cpu_us_per_tx") for t in TARGETS]
            if all(v is None for v in vals):
                continue
            name = label(sc) + {"churn": " (a connection per transaction)", "latency": " (latency run)"}.get(sc["kind"], "")
            p(f"| {name} | {sc['clients']} | " + " | ".join(f"{v:,.1f}" if v is not None else "n/a" for v in vals) + " |")
        p("")

    # The floor.
    if floor:
        p("## The floor: one hop through a 1:1 relay (benches/relay_floor.rs)")
        p("")
        p("The cheapest proxy this kernel allows (one thread, epoll, bytes copied through unread, a server "
          "connection per client), measured where pooling changes nothing. Its cost is what any pooler pays for "
          "the extra hop.")
        p("")
        p("| scenario | clients | direct tps | floor tps | floor/direct | pgbouncer/direct | pgtide/direct | "
          "floor CPU µs/tx | pgbouncer CPU µs/tx | pgtide CPU µs/tx | floor/pgbouncer CPU | pgtide/floor CPU |")
        p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        f1 = lambda v: f"{v:.1f}" if v is not None else "n/a"
        for x in floor:
            sc = next(s for s in scenarios if s["id"] == x["scenario"])
            name = label(sc) + (" (latency run)" if sc["kind"] == "latency" else "")
            od, cu = x["over_direct"], x["cpu_us_per_tx"]
            p(f"| {name} | {x['clients']} | {fmt_tps(x['median_tps']['direct'])} | {fmt_tps(x['median_tps']['floor'])} | "
              f"{fmt_ratio(od['floor'])} | {fmt_ratio(od['pgbouncer'])} | {fmt_ratio(od['pgtide'])} | "
              f"{f1(cu['floor'])} | {f1(cu['pgbouncer'])} | {f1(cu['pgtide'])} | "
              f"{fmt_ratio(x['floor_cpu_over_pgbouncer'])} | {fmt_ratio(x['pgtide_cpu_over_floor'])} |")
        p("")
    if bounds:
        p("What the floor allows where pooling matters: with M the machine CPU per transaction in PgBouncer's cell, "
          "P PgBouncer's own and F the floor relay's (median of the floor cells), a pooler that cost only F would "
          "reach at most M / (M − P + F) × PgBouncer's tps while the machine is CPU-bound (a pooler that cost "
          "nothing: M / (M − P)). Arithmetic on the figures above, not a measurement.")
        p("")
        p("| scenario | clients | M µs/tx | P µs/tx | F µs/tx | max tps / PgBouncer at F | at zero cost |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        for b in bounds:
            sc = next(s for s in scenarios if s["id"] == b["scenario"])
            name = label(sc) + (" (latency run)" if sc["kind"] == "latency" else "")
            p(f"| {name} | {b['clients']} | {b['machine_cpu_us_per_tx']:.1f} | {b['pgbouncer_cpu_us_per_tx']:.1f} | "
              f"{b['floor_cpu_us_per_tx']:.1f} | {fmt_ratio(b['max_tps_over_pgbouncer'])} | "
              f"{fmt_ratio(b['max_tps_over_pgbouncer_zero_cost'])} |")
        p("")

    # Latency.
    if latency and latency["median_us"]:
        sc = next(s for s in scenarios if s["id"] == latency["scenario"])
        p(f"## Latency at 1 client ({label(sc)} -c 1 -j 1 --log; microseconds, median of the rounds)")
        p("")
        p("| target | avg | p50 | p90 | p99 | p99.9 | tps |")
        p("|---|---:|---:|---:|---:|---:|---:|")
        for t in TARGETS:
            v = latency["median_us"].get(t)
            c = by_key.get((sc["id"], t))
            if v:
                p(f"| {t} | " + " | ".join(fmt_us(v[k], k) for k in LAT_KEYS) + f" | {fmt_tps(c['median_tps'])} |")
            elif c:
                p(f"| {t} | {c['verdict']} | | | | | |")
        for t in PROXIES:
            a = latency["added_us"].get(f"{t}_minus_direct")
            if a:
                p(f"| {t} − direct (added) | " + " | ".join(fmt_us(a[k], k, "+") for k in LAT_KEYS) + " | |")
        p("")

    # Prepared.
    prep = [sc for sc in scenarios if sc["kind"] == "prepared" and by_key.get((sc["id"], "pgtide"))]
    if prep:
        p("## pgtide -M prepared")
        p("")
        p("| clients | pgtide prepared tps | pgtide extended tps | prepared/extended (gain from not re-parsing) | pgtide prepared / direct prepared |")
        p("|---:|---:|---:|---:|---:|")
        for sc in prep:
            pt = by_key[(sc["id"], "pgtide")]["median_tps"]
            ext = next((s for s in scenarios if s["flags"] == "-S -M extended" and s["clients"] == sc["clients"]), None)
            et = (by_key.get((ext["id"], "pgtide")) or {}).get("median_tps") if ext else None
            dt = (by_key.get((sc["id"], "direct")) or {}).get("median_tps")
            r1 = pt / et if pt is not None and et else None
            r2 = pt / dt if pt is not None and dt else None
            p(f"| {sc['clients']} | {fmt_tps(pt)} | {fmt_tps(et)} | {fmt_ratio(r1)} | {fmt_ratio(r2)} |")
        p("")
    if prepared:
        p(f"PgBouncer with pgbench -M prepared (transaction mode, {meta.get('pgbouncer')}; run once per client count, 3 s):")
        p("")
        for x in prepared:
            p(f"- {x['clients']} clients: {x['verdict']}")
        p("")

    # Idle memory.
    if idle:
        p(f"## Memory with idle clients (VmRSS; {idle_n} idle client connections)")
        p("")
        p("| pooler | opened | failed | VmRSS before (KiB) | VmRSS after (KiB) | KiB per idle client |")
        p("|---|---:|---:|---:|---:|---:|")
        for x in idle:
            per = f"{x['kib_per_client']:.2f}" if x["kib_per_client"] is not None else "n/a"
            p(f"| {x['target']} | {x['opened']} | {x['failed']} | {x['vmrss_before_kib']:,} | {x['vmrss_after_kib']:,} | {per} |")
        for x in idle:
            if x["note"]:
                p("")
                p(f"- {x['target']}: {x['note']}")
        p("")

    # Failures.
    failed_rounds = [(c, r) for c in cells for r in c["rounds"] if r["failed"]]
    if failed_rounds:
        p("## Failures")
        p("")
        for c, r in failed_rounds:
            sc = next(s for s in scenarios if s["id"] == c["scenario"])
            tag = "expected: more clients than max_connections leaves for direct" if c["failure_expected"] else "UNEXPECTED"
            p(f"- {c['target']}, {label(sc)}, {c['clients']} clients, round {r['round']} ({tag}): {r['failed']}")
        p("")
    if pooler_failures:
        p(f"**{len(pooler_failures)} pooler cell(s) failed; compare.sh exits non-zero.**")
        p("")
    if unexpected_direct:
        p(f"**{len(unexpected_direct)} direct cell(s) failed unexpectedly.**")
        p("")
    return "\n".join(out).rstrip("\n") + "\n"


def report_main(args):
    meta, scenarios, runs, idle, prepared = load(args.workdir)
    cells, by_key, ratios, latency, pooler_failures, unexpected_direct, floor, bounds = build(meta, scenarios, runs, idle, prepared)
    md = markdown(meta, scenarios, cells, by_key, ratios, latency, idle, prepared, pooler_failures, unexpected_direct, floor, bounds)
    with open(args.md, "w") as f:
        f.write(md)
    if args.json:
        intish = lambda k: int(meta[k]) if meta.get(k, "").isdigit() else None
        doc = {
            "metadata": {
                "date": meta.get("date"),
                "machine": {
                    "cpus": intish("cpus"),
                    "cpu_model": meta.get("cpu_model"),
                    "memory_gib": float(meta["mem_gib"]) if meta.get("mem_gib") else None,
                    "load_average_before": meta.get("load_before"),
                    "load_average_after": meta.get("load_after"),
                },
                "versions": {
                    "pgtide": meta.get("pgtide_version"),
                    "pgtide_build": meta.get("pgtide_build"),
                    "postgresql": meta.get("postgresql"),
                    "pgbouncer": meta.get("pgbouncer"),
                    "pgbench": meta.get("pgbench"),
                },
                "mode": meta.get("mode"),
                "rounds": intish("rounds"),
                "duration_s": intish("duration"),
                "idle_clients": intish("idle_n"),
                "pool_size": intish("pool_size"),
                "workers": intish("workers"),
                "pgbench_threads": intish("threads"),
                "postgresql_settings": meta.get("pg_settings"),
                "max_connections": intish("max_connections"),
                "direct_client_slots": intish("direct_slots"),
                "pgtide_settings": meta.get("pgtide_sets"),
                "adaptive": {
                    "measured": ["off"],
                    "note": "adaptive=on is not measured: the adaptive sizing controller is not built yet, "
                    "so pool.adaptive.enabled currently changes nothing",
                },
            },
            "scenarios": scenarios,
            "cells": cells,
            "ratios": ratios,
            "latency": latency,
            "floor": {
                "what": meta.get("floor") or None,
                "cells": floor,
                "bounds": bounds,
                "bound_note": "max_tps_over_pgbouncer = M / (M - P + F): M the machine's CPU per transaction in "
                "PgBouncer's cell, P PgBouncer's own CPU per transaction, F the floor relay's median CPU per "
                "transaction; valid while the machine is CPU-bound",
            },
            "pgbouncer_prepared": prepared,
            "idle_memory": idle,
            "pooler_cells_failed": [f"{c['target']} {c['scenario']}" for c in pooler_failures],
            "direct_cells_failed_unexpectedly": [c["scenario"] for c in unexpected_direct],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("files", nargs="+")
    rep = sub.add_parser("report")
    rep.add_argument("workdir")
    rep.add_argument("--md", required=True)
    rep.add_argument("--json")
    args = ap.parse_args()
    if args.cmd == "latency":
        return latency_main(args.files)
    return report_main(args)


if __name__ == "__main__":
    sys.exit(main())
