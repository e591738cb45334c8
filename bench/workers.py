"""``python -m bench.workers`` — issue 17 item 3: the prediction cycle spread over Celery workers.

The fleet (``--servers``, default 10,000, 24 h of buckets each, bench.seed) is forecast the way beat
runs it: ``forecasting.tasks.predict_fleet`` opens the run and enqueues its chunks
(TFT_PREDICTION_CHUNK_SIZE servers each) on the ``gpu`` queue; real ``celery worker -Q gpu -c 1``
processes take them and the last chunk finalises the run. For each worker count in ``--workers``:
start the workers, one warm-up run (each worker loads the model on its first chunk), then
``--reps`` timed runs; the cycle is the run's own started_at → finished_at. Per phase the run records
the seconds summed over its chunks (read, forecast, alerts, explain, write; finalize once), i.e.
worker-seconds, so a phase's wall share is about its sum / workers.

Then ``GET /predictions/current`` through gunicorn at ``--read-sizes`` (a complete run of each size
is made in-process first). Own database (tftsite_bench_workers), Redis DB ``BENCH_REDIS_URL``
(default DB 4 here) and data folder (bench/.data/workers), so it can run beside other sections.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime

from bench import common

PHASES = ("read", "forecast", "heuristic", "alerts", "explain", "write", "finalize")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _start_workers(n: int, extra_env: dict[str, str]) -> list[common.Process]:
    procs = []
    for k in range(n):
        argv = [common.PY, "-m", "celery", "-A", "tftsite", "worker", "-Q", common_gpu_queue(), "-c", "1",
                "--loglevel", "warning", "-n", f"benchw{k}@%h", "--without-gossip", "--without-mingle"]
        procs.append(common.Process(f"workers-w{n}-{k}", argv, {**common.bench_env(), **extra_env}))
    return procs


def common_gpu_queue() -> str:
    from django.conf import settings

    return settings.TFT_GPU_QUEUE


def _one_cycle(procs: list[common.Process], timeout: float) -> dict:
    from forecasting.models import PredictionRun
    from forecasting.tasks import predict_fleet

    started = time.perf_counter()
    run_id = predict_fleet()  # the beat task's body: outside a transaction, on_commit enqueues at once
    if run_id is None:
        raise RuntimeError("predict_fleet started no run (another one is running?)")
    while True:
        run = PredictionRun.objects.get(pk=run_id)
        if run.status != PredictionRun.Status.RUNNING:
            break
        for p in procs:
            p.check_alive()
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"run {run_id} still running after {timeout} s")
        time.sleep(0.2)
    if run.status != PredictionRun.Status.COMPLETE:
        raise RuntimeError(f"run {run_id} ended {run.status}: {run.error}")
    return {"cycle_s": (run.finished_at - run.started_at).total_seconds(), "observed_s": time.perf_counter() - started,
            "servers": run.servers, "chunks": run.chunks_total, "tft": run.tft_count, "fallback": run.fallback_count,
            "durations": dict(run.durations), "device": run.device, "model": run.model_name}


def _cycles(n_workers: int, *, reps: int, warmup: bool, timeout: float, extra_env: dict[str, str]) -> dict:
    """Without the warm-up, the first timed run includes each worker's model load (seconds)."""
    procs = _start_workers(n_workers, extra_env)
    try:
        time.sleep(3)
        warm = _one_cycle(procs, timeout) if warmup else None
        if warm:
            log(f"{n_workers} worker(s): warm-up run {warm['cycle_s']:.1f} s ({warm['chunks']} chunks)")
        runs = []
        for rep in range(reps):
            runs.append(_one_cycle(procs, timeout))
            log(f"{n_workers} worker(s) rep {rep + 1}: cycle {runs[-1]['cycle_s']:.1f} s, load {os.getloadavg()[0]:.2f}, "
                f"phases {runs[-1]['durations']}")
    finally:
        for p in procs:
            p.stop()
    last = runs[-1]
    phases = {p: common.summary([r["durations"][p] for r in runs if p in r["durations"]], 3)
              for p in PHASES if p in last["durations"]}
    return {"workers": n_workers, "servers": last["servers"], "chunks": last["chunks"], "tft": last["tft"],
            "fallback": last["fallback"], "device": last["device"], "model": last["model"],
            "warmup_cycle_s": round(warm["cycle_s"], 2) if warm else None, "cycle_s": common.summary([r["cycle_s"] for r in runs], 2),
            "phase_worker_seconds": phases,
            "per_1000_servers_s": round(common.summary([r["cycle_s"] for r in runs], 3)["median"] * 1000
                                        / last["servers"], 3)}


def _reads(sizes: list[int], *, fleet: int, reps: int, duration: float) -> dict:
    """The fleet's size reads the workers' last run; any other size is re-seeded and forecast here."""
    from bench import read, seed
    from forecasting.runs.chunks import fleet_predict

    out = {}
    for n in sorted(sizes, key=lambda n: n != fleet):
        if n != fleet:
            seed.seed_fleet(n)
            t = time.perf_counter()
            fleet_predict()
            log(f"read: {n} servers forecast in-process in {time.perf_counter() - t:.1f} s")
        with common.gunicorn(workers=2, name="workers-gunicorn") as (base, _web):
            out[str(n)] = read.run_reads(base, n, reps=reps, duration=duration, connections=1, log=log)
    return out


def _database_sizes() -> dict:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("SELECT count(*), pg_total_relation_size('ingest_metricbucket') FROM ingest_metricbucket")
        buckets, bucket_bytes = cur.fetchone()
        cur.execute("SELECT count(*), pg_total_relation_size('forecasting_serverforecast') FROM forecasting_serverforecast")
        forecasts, forecast_bytes = cur.fetchone()
    return {"bucket_rows": buckets, "bucket_bytes_per_row": round(bucket_bytes / max(buckets, 1), 1),
            "serverforecast_rows": forecasts, "serverforecast_bytes_per_row": round(forecast_bytes / max(forecasts, 1), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.workers", description=__doc__)
    p.add_argument("--servers", type=int, default=10_000)
    p.add_argument("--workers", default="1,2", help="worker counts to compare")
    p.add_argument("--reps", type=int, default=3, help="timed runs per worker count (after one warm-up)")
    p.add_argument("--no-warmup", action="store_true", help="time from the first run (it includes the model load)")
    p.add_argument("--read-sizes", default="1000,10000", help="fleet sizes for GET /predictions/current ('' = none)")
    p.add_argument("--read-duration", type=float, default=5.0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds one run may take")
    p.add_argument("--name", default="workers")
    args = p.parse_args(argv)
    common.DB_NAME = "tftsite_bench_workers"
    common.DATA_DIR = common.BENCH_DIR / ".data" / "workers"
    os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/4")
    # A loaded 2-core machine may take minutes per 10,000-server run: no expiry mid-run.
    extra_env = {"TFT_RUN_STALE_SECONDS": str(int(args.timeout) + 60)}
    os.environ.update(extra_env)
    common.apply_env()
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    log(f"database {common.DB_NAME} (dropped and recreated), Redis {os.environ['BENCH_REDIS_URL']}")
    common.recreate_database()
    import django

    django.setup()
    from bench import predict, seed

    result: dict = {"name": args.name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "command": "python -m bench.workers " + " ".join(sys.argv[1:] if argv is None else argv),
                    "machine": {"nproc": os.cpu_count(), "loadavg_at_start": load_start},
                    "model": predict.model_info()}
    try:
        t = time.perf_counter()
        seeded = seed.seed_fleet(args.servers)
        log(f"seeded {seeded['servers']} servers, {seeded['buckets']} buckets in {time.perf_counter() - t:.1f} s")
        result["cycles"] = [_cycles(int(w), reps=args.reps, warmup=not args.no_warmup, timeout=args.timeout, extra_env=extra_env)
                            for w in args.workers.split(",") if w]
        base = result["cycles"][0]["cycle_s"]["median"]
        result["speedup"] = {str(c["workers"]): round(base / c["cycle_s"]["median"], 3) for c in result["cycles"]}
        result["storage_at_fleet"] = _database_sizes()
        sizes = [int(s) for s in args.read_sizes.split(",") if s]
        if sizes:
            result["predictions_current"] = _reads(sizes, fleet=args.servers, reps=3, duration=args.read_duration)
    finally:
        result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        result["wall_s"] = round(time.perf_counter() - started, 1)
        path = common.write_json(args.name, result)
        log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
