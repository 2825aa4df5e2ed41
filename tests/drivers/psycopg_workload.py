"""Many short transactions through pgtide with psycopg 3's defaults (prepare_threshold 5: a
query run five times becomes a named prepared statement, reused across transactions that may
land on any server). Usage: psycopg_workload.py DSN CONNECTIONS TRANSACTIONS.
Prints one JSON line; exit 1 on error."""
import json
import sys
import threading

import psycopg


def worker(dsn, n, pids, errors, start):
    try:
        with psycopg.connect(dsn) as conn:
            # All connected before any transaction: started one by one on a loaded machine,
            # threads could otherwise run their transactions one after another and never
            # share the pool's servers.
            start.wait(timeout=60)
            for i in range(n):
                with conn.transaction():
                    cur = conn.execute("SELECT %s::int + 1", (i,))
                    assert cur.fetchone()[0] == i + 1
                    cur = conn.execute("SELECT %s::text || 'x', pg_backend_pid()", (str(i),))
                    t, pid = cur.fetchone()
                    assert t == f"{i}x", t
                    pids.add(pid)
            # A statement psycopg prepared is closed again when its cache is cleared.
            conn.prepared_max = 1
            for i in range(10):
                conn.execute("SELECT %s::int", (i,)).fetchone()
                conn.execute("SELECT %s::bigint", (i,)).fetchone()
                conn.commit()
    except Exception as e:  # reported by the main thread
        start.abort()
        errors.append(repr(e))


def main():
    dsn, conns, txs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pid_sets = [set() for _ in range(conns)]
    errors = []
    start = threading.Barrier(conns)
    threads = [threading.Thread(target=worker, args=(dsn, txs, pid_sets[k], errors, start))
               for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        print(json.dumps({"ok": False, "errors": errors[:5]}))
        sys.exit(1)
    print(json.dumps({"ok": True, "transactions": conns * txs,
                      "max_servers_per_client": max(len(s) for s in pid_sets)}))


main()
