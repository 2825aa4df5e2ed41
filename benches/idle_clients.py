#!/usr/bin/env python3
"""Opens COUNT idle PostgreSQL client connections and holds them open.

Used by benches/compare.sh to measure a pooler's memory per idle client. Each connection sends
a protocol 3.0 StartupMessage (user, database), expects trust authentication
(AuthenticationOk) and reads until ReadyForQuery; then it stays open, sending nothing.

Prints one line to stdout when every connection has been tried:
    ready <connected> <failed> <seconds>
then holds the sockets until killed (SIGTERM/SIGINT) or --hold seconds pass. Stdlib only,
loopback only.
"""

import argparse
import signal
import socket
import struct
import sys
import time


def startup_message(user: str, database: str) -> bytes:
    body = struct.pack("!I", 196608)  # protocol 3.0
    for k, v in (("user", user), ("database", database), ("application_name", "idle_clients")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def login(host: str, port: int, packet: bytes, timeout: float) -> socket.socket:
    """Connects and logs in; returns the socket at ReadyForQuery or raises."""
    s = socket.create_connection((host, port), timeout=timeout)
    try:
        s.sendall(packet)
        buf = b""
        deadline = time.monotonic() + timeout
        while True:
            # Walk the complete frames in buf.
            while len(buf) >= 5:
                tag = buf[0:1]
                (length,) = struct.unpack("!i", buf[1:5])
                if length < 4 or length > 1 << 20:
                    raise RuntimeError(f"bad frame length {length}")
                if len(buf) < 1 + length:
                    break
                body = buf[5 : 1 + length]
                buf = buf[1 + length :]
                if tag == b"E":
                    raise RuntimeError("ErrorResponse: " + body.replace(b"\0", b" ").decode(errors="replace"))
                if tag == b"R" and struct.unpack("!i", body[:4])[0] != 0:
                    raise RuntimeError("server asks for a password (expected trust)")
                if tag == b"Z":
                    if buf:
                        raise RuntimeError("data after ReadyForQuery")
                    s.settimeout(None)
                    return s
            if time.monotonic() > deadline:
                raise TimeoutError("no ReadyForQuery in time")
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed during login")
            buf += chunk
    except BaseException:
        s.close()
        raise


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--user", default="demo")
    ap.add_argument("--database", default="demo")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-login timeout, seconds")
    ap.add_argument("--max-seconds", type=float, default=300.0, help="give up opening after this long")
    ap.add_argument("--hold", type=float, default=600.0, help="hold the sockets at most this long")
    args = ap.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        print("idle_clients: loopback addresses only", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    packet = startup_message(args.user, args.database)
    held, failed, first_error = [], 0, None
    start = time.monotonic()
    for i in range(args.count):
        if time.monotonic() - start > args.max_seconds:
            failed += args.count - i
            first_error = first_error or "gave up: --max-seconds reached"
            break
        try:
            held.append(login(args.host, args.port, packet, args.timeout))
        except (OSError, RuntimeError) as e:
            failed += 1
            first_error = first_error or f"connection {i}: {e}"
        if (i + 1) % 1000 == 0:
            print(f"idle_clients: {i + 1}/{args.count} tried, {failed} failed", file=sys.stderr, flush=True)
    if first_error:
        print(f"idle_clients: first failure: {first_error}", file=sys.stderr, flush=True)
    print(f"ready {len(held)} {failed} {time.monotonic() - start:.1f}", flush=True)
    try:
        time.sleep(args.hold)
    except KeyboardInterrupt:
        pass
    for s in held:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
