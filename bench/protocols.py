"""``python -m bench.protocols`` — the remote_write receiver's samples/s beside the JSON feed's records/s.

Both go through gunicorn (sync workers, production settings, PostgreSQL) into the same write path.
Each request carries the same records: --servers servers × --timestamps instants (1,000 records by
default), as a JSON feed batch or as a snappy protobuf WriteRequest of 4 series per server (4
samples a record). Every body has its own timestamps, so nothing is a duplicate. The two kinds
alternate (json, remote_write, json, …, --reps each) so they share the machine's load; each figure is
the median of the repetitions. Its own database and Redis db (not the shared bench ones).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from bench import common

METRICS = ("cpu_pct", "mem_pct", "disk_io_mb_s", "latency_ms")


def _records(k: int, *, servers: int, timestamps: int, base: datetime) -> list[dict]:
    t0 = base + timedelta(seconds=k * timestamps)
    return [
        {
            "timestamp": (t0 + timedelta(seconds=s)).isoformat(),
            "server_name": f"pw{n:04d}",
            "cpu_pct": 40.0 + s % 7,
            "mem_pct": 55.5,
            "disk_io_mb_s": 12.0,
            "latency_ms": 8.5,
            "state": "healthy",
        }
        for s in range(timestamps)
        for n in range(servers)
    ]


def _write_request(records: list[dict]) -> bytes:
    import cramjam

    from protocols.remote_write import WriteRequest

    request = WriteRequest()
    by_series: dict[tuple[str, str], list] = {}
    for r in records:
        ms = int(datetime.fromisoformat(r["timestamp"]).timestamp() * 1000)
        for metric in METRICS:
            by_series.setdefault((r["server_name"], metric), []).append((r[metric], ms))
    for (server, metric), samples in by_series.items():
        ts = request.timeseries.add()
        ts.labels.add(name="__name__", value=metric)
        ts.labels.add(name="instance", value=f"{server}:9100")
        ts.labels.add(name="job", value="node")
        for value, ms in samples:
            ts.samples.add(value=value, timestamp=ms)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _load(
    base: str,
    path: str,
    headers: dict,
    bodies: list[bytes],
    *,
    connections: int,
    duration: float,
    warm_up: bool = False,
) -> dict:
    """Post bodies from `connections` keep-alive connections for `duration` seconds."""
    url = urlparse(base)
    lock, cursor, latencies, errors = threading.Lock(), [0], [], []
    deadline = time.perf_counter() + duration

    def worker():
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                if cursor[0] >= len(bodies):
                    return
                body = bodies[cursor[0]]
                cursor[0] += 1
            started = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read()
            with lock:
                latencies.append(time.perf_counter() - started)
                if response.status != 200:
                    errors.append(f"{response.status}: {text[:200]!r}")

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if cursor[0] >= len(bodies) and not warm_up:
        raise RuntimeError("ran out of bodies: raise --bodies")
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "errors": errors[:3],
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.protocols", description=__doc__)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=8.0, help="seconds per repetition")
    p.add_argument("--servers", type=int, default=50)
    p.add_argument("--timestamps", type=int, default=20)
    p.add_argument("--bodies", type=int, default=400, help="bodies built per kind (each is sent once)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    p.add_argument("--connections", type=int, default=2)
    p.add_argument("--name", default="protocols")
    args = p.parse_args(argv)
    if args.reps < 3:
        p.error("--reps must be at least 3")
    common.DB_NAME = os.environ.get("BENCH_DB_NAME", "tftsite_bench_protocols")
    os.environ.setdefault("BENCH_DATA_DIR", "/tmp/tftsite-bench-protocols")  # logs, static files: not in the tree
    common.DATA_DIR = common.Path(os.environ["BENCH_DATA_DIR"])
    common.apply_env()
    import django

    django.setup()
    common.recreate_database()
    base_time = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    per_body = args.servers * args.timestamps
    json_bodies, rw_bodies = [], []
    for k in range(args.bodies):
        json_bodies.append(
            json.dumps(
                {"records": _records(2 * k, servers=args.servers, timestamps=args.timestamps, base=base_time)}
            ).encode()
        )
        rw_bodies.append(
            _write_request(_records(2 * k + 1, servers=args.servers, timestamps=args.timestamps, base=base_time))
        )
    kinds = {
        "json_feed": ("/feed/data", {"Content-Type": "application/json", "X-API-Key": common.API_KEY}, json_bodies),
        "remote_write": (
            "/api/v1/write",
            {
                "Content-Type": "application/x-protobuf",
                "Content-Encoding": "snappy",
                "X-Prometheus-Remote-Write-Version": "0.1.0",
                "Authorization": f"Bearer {common.API_KEY}",
            },
            rw_bodies,
        ),
    }
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    with common.gunicorn(workers=args.workers) as (base, _proc):
        for path, headers, bodies in kinds.values():  # warm-up: a few bodies each
            _load(base, path, headers, bodies[:10], connections=1, duration=60, warm_up=True)
            del bodies[:10]
        for _ in range(args.reps):
            for kind, (path, headers, bodies) in kinds.items():
                result = _load(base, path, headers, bodies, connections=args.connections, duration=args.duration)
                del bodies[: result["requests"]]
                if result["errors"]:
                    raise RuntimeError(f"{kind}: {result['errors']}")
                result["records_per_s"] = result["requests"] * per_body / result["seconds"]
                runs[kind].append(result)
    out = {
        "machine": {"nproc": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "args": vars(args),
        "records_per_request": per_body,
    }
    for kind, results in runs.items():
        out[kind] = {
            "records_per_s": common.summary([r["records_per_s"] for r in results], 0),
            "p50_ms": common.summary([r["p50_ms"] for r in results], 1),
        }
    out["remote_write"]["samples_per_s"] = common.summary([r["records_per_s"] * 4 for r in runs["remote_write"]], 0)
    ratios = [
        rw["records_per_s"] / js["records_per_s"]
        for rw, js in zip(runs["remote_write"], runs["json_feed"], strict=True)
    ]
    out["remote_write_vs_json_records_ratio"] = common.summary(ratios, 2)
    path = common.write_json(args.name, out)
    print(json.dumps(out, indent=1))
    print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
