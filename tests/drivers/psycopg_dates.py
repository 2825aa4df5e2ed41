"""Reads dates and timestamps with psycopg 3 (libpq underneath) and prints what it got as one
JSON line. The DateStyle and TimeZone come from the environment (PGDATESTYLE, PGTZ), as libpq
sends them in the startup packet; psycopg picks its date parser from the DateStyle the server
reports at login. With "reset", also what RESET ALL returns to (session mode: the client's
startup values). Usage: psycopg_dates.py DSN [reset]"""
import json
import sys

import psycopg


def main():
    with psycopg.connect(sys.argv[1], autocommit=True) as conn:
        reported = {
            name: conn.info.parameter_status(name)
            for name in ("DateStyle", "TimeZone", "IntervalStyle")
        }
        row = conn.execute(
            "select date '2024-03-01', timestamp '2024-03-01 12:34:56', "
            "current_setting('datestyle'), current_setting('timezone')"
        ).fetchone()
        result = {"reported": reported, "values": [str(v) for v in row]}
        if sys.argv[2:] == ["reset"]:
            conn.execute("reset all")
            after = conn.execute("select current_setting('datestyle'), date '2024-03-02'")
            result["after_reset"] = [str(v) for v in after.fetchone()]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
