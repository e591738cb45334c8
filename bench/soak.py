"""Issue 7 item 4: the simulated 20-server fleet fed at 100 requests/s for N minutes while a real
Celery worker with beat forecasts every minute. Reports errors, p99 per minute and RSS per minute."""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bench import common
from bench.seed import seed_fleet

RATE = 100  # requests/s, one 20-record batch each
SEED = 5


def _history(servers: list[str], t0: datetime, minutes: int) -> list:
    """The fleet's 24 h before t0, from the same latent process the live records come from."""
    from forecasting.engine.simulator import simulate_fleet_truth

    truth = simulate_fleet_truth(servers=servers, start=t0 - timedelta(hours=24), end=t0 + timedelta(minutes=minutes),
                                 seed=SEED)
    out = []
    for w in truth.windows:
        k = int((t0 - w.start).total_seconds() // (w.step_minutes * 60))  # buckets wholly before t0's bucket
        out.append(replace(w, values=w.values[:k], states=w.states[:k]))
    return out


def _tree_rss(pid: int) -> tuple[float, float]:
    """(largest, total) VmRSS in MB over a process and its descendants."""
    rss = [common.proc_mem(p).get("VmRSS", 0.0) for p in [pid, *common.descendants(pid)]]
    return (max(rss) if rss else 0.0, sum(rss))


def _sample_rss(gen, web, celery) -> list[dict]:
    """Every 5 s while the load generator runs: the largest web worker's and the worker's RSS."""
    samples = []
    started = time.monotonic()
    while gen.poll() is None:
        web_max, _ = max((_tree_rss(p) for p in common.web_worker_pids(web)), default=(0.0, 0.0))
        worker_max, worker_total = _tree_rss(celery.pid)
        samples.append({"t": round(time.monotonic() - started, 1), "web_rss_mb": round(web_max, 1),
                        "worker_rss_mb": round(worker_max, 1), "worker_tree_rss_mb": round(worker_total, 1)})
        celery.check_alive()
        time.sleep(5)
    return samples


def _by_minute(samples: list[dict], per_minute: list[dict], minutes: int) -> list[dict]:
    """The load generator's per-minute figures with each minute's peak RSS samples."""
    out = []
    for m in range(minutes):
        in_minute = [s for s in samples if m * 60 <= s["t"] < (m + 1) * 60] or [{}]
        out.append({**per_minute[m], "web_rss_mb": max(s.get("web_rss_mb", 0) for s in in_minute),
                    "worker_rss_mb": max(s.get("worker_rss_mb", 0) for s in in_minute)})
    return out


def run_soak(args, log) -> dict:
    from forecasting.engine.simulator import fleet_names
    from forecasting.models import PredictionRun

    minutes = args.minutes
    servers = fleet_names(20)
    t0 = datetime.now(UTC) + timedelta(seconds=20)  # the live feed starts about then
    seeded = seed_fleet(20, now=t0 - timedelta(seconds=1), windows=_history(servers, t0, minutes))
    log(f"soak: seeded {seeded['servers']} servers with {seeded['buckets']} buckets of history")
    from forecasting.registry import active_model_version, model_versions_sync

    model_versions_sync()
    version = active_model_version()
    log(f"soak: model {version.name if version else 'none (heuristic fallback)'}")
    celery = common.Process(
        "celery",
        [common.PY, "-m", "celery", "-A", "tftsite", "worker", "--beat", "--queues", "celery,gpu", "--concurrency", "1",
         "--loglevel", "info", "-s", str(common.DATA_DIR / "celerybeat-schedule"), "-n", "bench@%h"],
        common.bench_env(),
    )
    try:
        with common.gunicorn(workers=args.workers, worker_class=args.worker_class, threads=args.threads) as (base, web):
            log(f"soak: gunicorn {args.worker_class} × {args.workers} on {base}, celery worker with beat pid {celery.pid}")
            spec = {"mode": "soak", "base": base, "api_key": common.API_KEY, "servers": servers, "seed": SEED,
                    "t0": max(t0.timestamp(), time.time()), "minutes": minutes, "rate": RATE}
            spec["t0"] = t0.timestamp()
            while time.time() < t0.timestamp():
                time.sleep(0.2)
            gen = subprocess.Popen([common.PY, "-m", "bench.loadgen", json.dumps(spec)], cwd=common.ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            progress: list[str] = []

            def pump() -> None:
                for line in gen.stderr:
                    progress.append(line)
                    if line.startswith("{"):
                        log(f"soak minute: {line.strip()}")

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            samples = _sample_rss(gen, web, celery)
            out, _ = gen.communicate()
            reader.join(timeout=5)
            if gen.returncode != 0:
                raise RuntimeError(f"soak loadgen failed: {''.join(progress)[-3000:]}")
            result = json.loads(out.strip().splitlines()[-1])
            time.sleep(2)
    finally:
        celery.stop()
    soak_start = datetime.fromtimestamp(result["wall_start"], tz=UTC)
    runs = list(PredictionRun.objects.filter(started_at__gte=soak_start - timedelta(seconds=5)).order_by("started_at"))
    by_minute = _by_minute(samples, result["per_minute"], minutes)
    done = [r for r in runs if r.status == PredictionRun.Status.COMPLETE]
    # "start": the first minute after the first complete run (the worker has loaded the model then)
    first_run_minute = (int((done[0].finished_at - soak_start).total_seconds() // 60) + 1) if done else 0
    start_row = by_minute[min(first_run_minute, minutes - 1)]
    end_row = by_minute[-1]
    return {
        "minutes": minutes,
        "rate": RATE,
        "requests": result["requests"],
        "errors": result["errors"],
        "statuses": result["statuses"],
        "error_samples": result["error_samples"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "p99_first_ms": by_minute[0]["p99_ms"],
        "p99_last_ms": end_row["p99_ms"],
        "web_rss_start_mb": start_row["web_rss_mb"],
        "web_rss_end_mb": end_row["web_rss_mb"],
        "worker_rss_start_mb": start_row["worker_rss_mb"],
        "worker_rss_end_mb": end_row["worker_rss_mb"],
        "rss_start_minute": start_row["minute"],
        "runs_complete": len(done),
        "runs_failed": sum(r.status in (PredictionRun.Status.FAILED, PredictionRun.Status.EXPIRED) for r in runs),
        "run_seconds_median": round(statistics.median([r.duration_seconds for r in done]), 3) if done else None,
        "run_methods": {"tft": sum(r.tft_count for r in done), "fallback": sum(r.fallback_count for r in done)},
        "model": done[-1].model_name if done else None,
        "per_minute": by_minute,
    }
