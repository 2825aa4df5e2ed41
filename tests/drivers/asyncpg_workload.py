"""Many short transactions through pgtide with asyncpg's defaults (statement cache on: every
query is a named prepared statement, reused across transactions that may land on any server).
Usage: asyncpg_workload.py DSN CONNECTIONS TRANSACTIONS. Prints one JSON line; exit 1 on error."""
import asyncio
import json
import sys

import asyncpg


async def worker(dsn, n, pids, start):
    conn = await asyncpg.connect(dsn)
    # Every connection starts its transactions together: a worker that ran all of its
    # transactions before the others connected would only ever see one server.
    await start.wait()
    try:
        for i in range(n):
            async with conn.transaction():
                got = await conn.fetchval("SELECT $1::int + 1", i)
                assert got == i + 1, (got, i)
                row = await conn.fetchrow(
                    "SELECT $1::text || 'x' AS t, pg_backend_pid() AS pid", str(i)
                )
                assert row["t"] == f"{i}x", row
                pids.add(row["pid"])
            # Outside a transaction too (an implicit one per statement).
            assert await conn.fetchval("SELECT $1::int * 2", i) == i * 2
    finally:
        await conn.close()


async def main():
    dsn, conns, txs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    pid_sets = [set() for _ in range(conns)]
    start = asyncio.Barrier(conns)
    await asyncio.gather(*(worker(dsn, txs, pid_sets[k], start) for k in range(conns)))
    print(json.dumps({"ok": True, "transactions": conns * txs,
                      "max_servers_per_client": max(len(s) for s in pid_sets)}))


asyncio.run(main())
