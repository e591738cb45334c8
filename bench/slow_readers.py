"""Slow readers against the feed (issue 27): can slow clients of a large read hold the web workers?

``python -m bench.slow_readers [--servers 1000] [--readers 50] [--duration 10] [--reps 3]
[--recipes sync,gthread,asgi]`` — loopback only, bounded (each phase lasts --duration seconds).

A fleet of --servers servers with one complete prediction run is seeded in its own database
(tftsite_bench_slow, dropped and recreated). Then, for each gunicorn recipe, --reps times:
- "alone": one feeder POSTs 20-record batches to /feed/data back to back for --duration seconds;
- "slow": the same while --readers clients read GET /predictions/current (several MB) at about
  10 KB/s each (receive buffer 4 KB, 1 KB every 0.1 s): the clients a mobile network or a
  hostile script gives a public read endpoint.
Reported per recipe and phase: feed batches/s, p50/p99 latency (ms), errors (timeouts of 10 s,
refused connections, non-2xx), medians over the reps. Rate limits are off (bench_env), so the
figures show the server model, not the throttles.

Recipes: sync = `gunicorn --workers 2` (the recipe before issue 27); gthread = `--worker-class gthread
--threads 8`; asgi = gunicorn's asyncio ASGI worker on tftsite.asgi (Django runs each sync view in a
thread; the event loop writes the response at the client's pace, so a slow client holds a
buffered response, not a thread).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import sys
import threading
import time
from datetime import UTC, datetime

from bench import common

RECIPES = {
    "sync": ["tftsite.wsgi:application", "--workers", "2"],
    "gthread": ["tftsite.wsgi:application", "--workers", "2", "--worker-class", "gthread", "--threads", "8"],
    "asgi": ["tftsite.asgi:application", "--workers", "2", "--worker-class", "asgi"],
}
READ_PATH = "/predictions/current"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class SlowReader(threading.Thread):
    """Reads READ_PATH at ~10 KB/s, reconnecting when a body ends, until stopped."""

    def __init__(self, port: int, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.stop, self.bytes, self.errors = port, stop, 0, 0

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    sock.settimeout(30)
                    sock.connect((common.HOST, self.port))
                    sock.sendall(
                        f"GET {READ_PATH} HTTP/1.1\r\nHost: {common.HOST}\r\nConnection: close\r\n\r\n".encode()
                    )
                    while not self.stop.is_set():
                        chunk = sock.recv(1024)
                        if not chunk:
                            break
                        self.bytes += len(chunk)
                        time.sleep(0.1)
            except OSError:
                self.errors += 1
                time.sleep(0.5)


def _batch(i: int) -> bytes:
    now = datetime.now(UTC)
    records = [
        {
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "server_name": f"ppfeed{k:03d}",
            "cpu_pct": 40.0 + (i + k) % 20,
            "mem_pct": 50.0,
            "disk_io_mb_s": 3.0,
            "latency_ms": 12.0,
            "state": "healthy",
        }
        for k in range(20)
    ]
    return json.dumps({"records": records}).encode()


def feed_for(port: int, seconds: float) -> dict:
    """One feeder, back to back: latencies of the 2xx answers and the errors."""
    latencies, errors, samples = [], 0, []
    conn = http.client.HTTPConnection(common.HOST, port, timeout=10)
    deadline = time.monotonic() + seconds
    i = 0
    while time.monotonic() < deadline:
        i += 1
        t = time.perf_counter()
        try:
            conn.request(
                "POST",
                "/feed/data",
                body=_batch(i),
                headers={"Content-Type": "application/json", "X-API-Key": common.API_KEY},
            )
            response = conn.getresponse()
            response.read()
            if 200 <= response.status < 300:
                latencies.append((time.perf_counter() - t) * 1000)
            else:
                errors += 1
                samples.append(f"HTTP {response.status}")
        except (OSError, http.client.HTTPException) as exc:
            errors += 1
            samples.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection(common.HOST, port, timeout=10)
    conn.close()
    latencies.sort()
    p50, p99 = (common.percentile(latencies, q) for q in (50, 99))
    return {
        "batches_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(p50, 1) if p50 is not None else None,
        "p99_ms": round(p99, 1) if p99 is not None else None,
        "errors": errors,
        "error_samples": samples[:3],
    }


def measure(recipe: str, *, readers: int, duration: float, reps: int) -> dict:
    port = common.free_port()
    argv = [
        common.PY,
        "-m",
        "gunicorn",
        *RECIPES[recipe],
        "--bind",
        f"{common.HOST}:{port}",
        "--timeout",
        "30",
        "--graceful-timeout",
        "5",
    ]
    proc = common.Process(f"slow-{recipe}", argv, {**common.bench_env(), **EXTRA_ENV})
    out: dict = {"argv": " ".join(argv[2:]), "alone": [], "slow": [], "reader_kb_per_s": []}
    try:
        common.wait_http(f"http://{common.HOST}:{port}/health", timeout=60)
        for _ in range(8):
            common.wait_http(f"http://{common.HOST}:{port}/health", timeout=10)
        for rep in range(reps):
            alone = feed_for(port, duration)
            stop = threading.Event()
            pool = [SlowReader(port, stop) for _ in range(readers)]
            for reader in pool:
                reader.start()
            time.sleep(2)  # every reader connected and its response under way
            before = sum(r.bytes for r in pool)
            slow = feed_for(port, duration)
            slow["db_backends"] = len(common.bench_backend_pids())  # connections the web workers hold
            kb_s = (sum(r.bytes for r in pool) - before) / 1024 / duration / readers
            stop.set()
            for reader in pool:
                reader.join(timeout=35)
            out["alone"].append(alone)
            out["slow"].append(slow)
            out["reader_kb_per_s"].append(round(kb_s, 1))
            log(
                f"{recipe} rep {rep + 1}: alone {alone['batches_per_s']}/s p50 {alone['p50_ms']} p99 {alone['p99_ms']} "
                f"err {alone['errors']} | {readers} slow readers: {slow['batches_per_s']}/s p50 {slow['p50_ms']} "
                f"p99 {slow['p99_ms']} err {slow['errors']} {slow['error_samples'][:2]} | reader {kb_s:.1f} KB/s"
            )
            time.sleep(3)  # the previous phase's connections drain
        proc.check_alive()
    finally:
        proc.stop()
    for phase in ("alone", "slow"):
        runs = out[phase]
        out[phase] = {key: _median([r[key] for r in runs]) for key in ("batches_per_s", "p50_ms", "p99_ms", "errors")}
        out[phase]["reps"] = runs
    return out


def _median(values):
    vals = [v for v in values if v is not None]
    return round(statistics.median(vals), 1) if vals else None


EXTRA_ENV = {"TFT_RATE_LIMIT_HEAVY_READ_PER_MINUTE": "0", "TFT_RATE_LIMIT_METRICS_PER_MINUTE": "0"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slow_readers", description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--readers", type=int, default=50)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--recipes", default="sync,gthread,asgi")
    args = p.parse_args(argv)
    common.DB_NAME = "tftsite_bench_slow"
    empty = common.DATA_DIR / "no-models"  # the heuristic: the read's size, not the model, matters here
    empty.mkdir(parents=True, exist_ok=True)
    EXTRA_ENV["TFT_MODELS_DIR"] = str(empty)
    os.environ.update(EXTRA_ENV)
    common.apply_env()
    log(f"database {common.DB_NAME} (recreated), {args.servers} servers")
    common.recreate_database()
    import django

    django.setup()
    from bench.seed import seed_fleet
    from forecasting.runs.chunks import fleet_predict

    seed_fleet(args.servers)
    run = fleet_predict()
    from forecasting.runs.selectors import predictions_current_json

    body_mb = round(len(predictions_current_json(run)) / 1e6, 1)
    log(f"run {run.pk}: {run.servers} servers; {READ_PATH} is {body_mb} MB")
    results = {
        "name": "slow_readers",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.slow_readers " + " ".join(sys.argv[1:] if argv is None else argv),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "nproc": os.cpu_count(),
        "servers": args.servers,
        "readers": args.readers,
        "read_body_mb": body_mb,
        "recipes": {},
    }
    for recipe in args.recipes.split(","):
        results["recipes"][recipe] = measure(recipe, readers=args.readers, duration=args.duration, reps=args.reps)
    results["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = common.write_json("slow_readers", results)
    for recipe, r in results["recipes"].items():
        log(f"{recipe:8s} alone {r['alone']} | slow {r['slow']}")
    log(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
