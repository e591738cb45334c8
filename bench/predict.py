"""Section 2 (prediction cycle vs fleet size, forward pass) and the prediction-worker half of 4."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

from bench.common import PY, ROOT, bench_env, summary

PHASES = ("read", "forecast", "heuristic", "blend", "alerts", "explain", "write", "finalize")
# The explanation pass (forecasting.runs.chunks._explain_chunk): "needed" is what runs serve, "off" is
# the cycle without explanations (before issue #15), "all" explains every TFT forecast.
EXPLAIN_MODES = ("needed", "off", "all")


def model_info() -> dict:
    """The model fleet_predict will use (registering folders under models/ first)."""
    from forecasting.registry import active_model_version, model_versions_sync

    model_versions_sync()
    version = active_model_version()
    if version is None:
        return {"name": None, "path": None, "note": "no model in models/: fleet_predict uses the heuristic fallback"}
    return {"name": version.name, "path": version.path}


def _explain_variants(totals: dict[str, list[float]], explained: dict[str, list[int]]) -> dict:
    medians = {mode: summary(v, 3) for mode, v in totals.items()}
    base = medians["off"]["median"]
    return {
        "total_s": medians,
        "ratio_to_off": {mode: round(m["median"] / base, 3) for mode, m in medians.items() if base},
        "explained_servers": explained,
    }


def time_cycles(n: int, *, reps: int, log) -> dict:
    """fleet_predict() in this process, ``reps`` times per explanation mode after one warm-up (which
    loads the model); the modes alternate within each rep so they share the machine's state."""
    from forecasting.models import ServerForecast
    from forecasting.runs.chunks import fleet_predict

    started = time.perf_counter()
    run = fleet_predict()
    warm = time.perf_counter() - started
    totals, phases, run_info, tft_per_rep = [], {p: [] for p in PHASES}, {}, []
    variant_totals = {mode: [] for mode in EXPLAIN_MODES}
    explained = {mode: [] for mode in EXPLAIN_MODES}
    for _ in range(reps):
        for mode in EXPLAIN_MODES:
            started = time.perf_counter()
            run = fleet_predict(explain=mode)
            variant_totals[mode].append(time.perf_counter() - started)
            explained[mode].append(ServerForecast.objects.filter(run=run, explanation__has_key="variables").count())
            if mode != "needed":
                continue
            totals.append(variant_totals[mode][-1])
            tft_per_rep.append(run.tft_count)
            for p in PHASES:
                if p in run.durations:
                    phases[p].append(run.durations[p])
            run_info = {"servers": run.servers, "tft": run.tft_count, "fallback": run.fallback_count,
                        "fallback_reasons": run.fallback_reasons, "model": run.model_name, "device": run.device,
                        "durations_last": run.durations}
    if run_info.get("servers") != n:
        raise RuntimeError(f"fleet_predict forecast {run_info.get('servers')} servers, expected {n}")
    result = {"servers": n, "first_run_s": round(warm, 3), "total_s": summary(totals, 3), "tft_per_rep": tft_per_rep,
              "phases_s": {p: summary(v, 4) for p, v in phases.items() if v and (max(v) > 0 or p != "heuristic")},
              "explanation": _explain_variants(variant_totals, explained), **run_info}
    log(f"predict {n} servers: total {result['total_s']['median']} s (min {result['total_s']['min']}, max "
        f"{result['total_s']['max']}); first run {warm:.2f} s; phases "
        + ", ".join(f"{p} {v['median']}" for p, v in result["phases_s"].items())
        + f"; tft {run_info['tft']} / fallback {run_info['fallback']}")
    ex = result["explanation"]
    log(f"predict {n} servers by explanation mode: "
        + ", ".join(f"{m} {ex['total_s'][m]['median']} s (x{ex['ratio_to_off'].get(m)}, "
                    f"{ex['explained_servers'][m][-1]} explained)" for m in EXPLAIN_MODES))
    return result


def worker_memory(n: int, *, log) -> dict:
    """Peak RSS of a fresh process that imports the app, loads the model and runs fleet_predict()."""
    done = subprocess.run([PY, "-m", "bench.predict_worker"], cwd=ROOT, env={**os.environ, **bench_env()},
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"predict_worker failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    log(f"prediction worker at {n} servers: peak RSS {result['vmhwm_mb']} MB (ru_maxrss {result['ru_maxrss_mb']} MB), "
        f"{result['seconds_incl_model_load']} s incl. model load")
    return result


def forward_pass(path: str | None, *, reps: int, n_windows: int = 1000, log) -> dict:
    """predict_array on ``n_windows`` simulated 24-hour windows: windows/s of the model alone."""
    if path is None:
        return {"skipped": "no model in models/"}
    from forecasting.engine.network import load_forecaster, runtime_info
    from forecasting.engine.simulator import fleet_names, simulate_buckets

    now = datetime.now(UTC)
    windows = simulate_buckets(servers=fleet_names(n_windows), start=now - timedelta(hours=24), end=now, seed=11)
    started = time.perf_counter()
    forecaster = load_forecaster(path, device="cpu")
    load_s = time.perf_counter() - started
    forecaster.predict_array(windows[:128])  # warm-up
    rates = []
    for _ in range(reps):
        started = time.perf_counter()
        out = forecaster.predict_array(windows)
        rates.append(n_windows / (time.perf_counter() - started))
    assert out.shape[0] == n_windows
    result = {"windows": n_windows, "windows_per_s": summary(rates, 0), "load_s": round(load_s, 2),
              "chunk_size": forecaster.chunk_size, **runtime_info()}
    log(f"forward pass: {result['windows_per_s']['median']:,.0f} windows/s (min {result['windows_per_s']['min']:,.0f}, "
        f"max {result['windows_per_s']['max']:,.0f}), {result['torch_threads']} torch threads")
    return result
