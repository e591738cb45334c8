"""``python -m bench.schedule OLD_TREE`` — issue 25 item 2: the per-minute cost of the prediction
schedule at ``--servers`` (default 10,000), this tree (each server forecast once per closed bucket,
staggered over the bucket's runs) against an older tree (every server forecast every minute).

Both trees read the same fleet (bench.regression's set-up: one database per tree, migrated by its
own code, the same seeded ``ingest_server`` / ``ingest_metricbucket`` rows). Each measurement is a
fresh process in its tree, in-process runs (``fleet_predict``, one worker), the trees alternating
for ``--rounds``:

- old tree: one warm-up run (loads the model), then ``--reps`` whole runs. Every scheduled run of
  that tree forecasts the whole fleet, so a run is its per-minute cost.
- this tree: one warm-up run and one timed whole run (every server due: a fresh install or a new
  model, the cost of the first bucket), then ``--reps`` buckets: a new bucket is appended to every
  server (a copy of its last), and the five scheduled runs of the following bucket
  (``due_only=True`` at 10 s, 70 s, … 250 s into it, as beat runs them every 60 s) are timed. A
  run is one minute's cost; the five together are the bucket's.

    git worktree add --detach /tmp/old_main main && ln -s $PWD/.venv /tmp/old_main/.venv
    nice -n 10 .venv/bin/python -m bench.schedule /tmp/old_main --servers 10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import common, regression

MEASURE_OLD = r"""
import json, sys, time
import django
django.setup()
from forecasting.registry import model_versions_sync
from forecasting.runs.chunks import fleet_predict
reps = int(sys.argv[1])
model_versions_sync()
fleet_predict()
runs = []
for _ in range(reps):
    t = time.perf_counter(); run = fleet_predict(); s = time.perf_counter() - t
    runs.append({"s": s, "forecasted": run.servers, "phases": dict(run.durations)})
print(json.dumps({"runs": runs, "tft": run.tft_count, "fallback": run.fallback_count, "model": run.model_name}))
"""

MEASURE_NEW = r"""
import json, sys, time
from datetime import timedelta
import django
django.setup()
from django.db import connection
from forecasting.registry import model_versions_sync
from forecasting.runs.chunks import fleet_predict
from forecasting.runs.selectors import stagger_runs
from forecasting.windows import bucket_floor
from ingest.models import Server
reps = int(sys.argv[1])
interval = int(sys.argv[2])
model_versions_sync()
newest = Server.objects.order_by("-last_seen").values_list("last_seen", flat=True).first()
boundary = bucket_floor(newest) + timedelta(minutes=5)  # every seeded bucket is closed from here on
fleet_predict(now=boundary + timedelta(seconds=5))  # warm-up: the model loads
t = time.perf_counter(); run = fleet_predict(now=boundary + timedelta(seconds=10)); s = time.perf_counter() - t
full = {"s": s, "forecasted": run.forecasted, "phases": dict(run.durations)}
with connection.cursor() as cur:
    cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'ingest_metricbucket' "
                "AND column_name NOT IN ('id', 'bucket_start') ORDER BY ordinal_position")
    cols = ", ".join(r[0] for r in cur.fetchall())
buckets = []
for rep in range(reps):
    new_bucket = boundary + timedelta(minutes=5 * rep)
    with connection.cursor() as cur:  # every server reports one more bucket (a copy of its last)
        cur.execute(f"INSERT INTO ingest_metricbucket ({cols}, bucket_start) SELECT DISTINCT ON (server_id) {cols}, "
                    f"%s FROM ingest_metricbucket ORDER BY server_id, bucket_start DESC", [new_bucket])
        cur.execute("UPDATE ingest_server SET last_seen = %s, record_count = record_count + 1",
                    [new_bucket + timedelta(minutes=1)])
        cur.execute("ANALYZE ingest_metricbucket")
    closed = new_bucket + timedelta(minutes=5)
    runs = []
    for phase in range(stagger_runs()):
        t = time.perf_counter()
        run = fleet_predict(now=closed + timedelta(seconds=10 + interval * phase), due_only=True)
        runs.append({"s": time.perf_counter() - t, "forecasted": run.forecasted, "served": run.servers,
                     "phases": dict(run.durations)})
    buckets.append(runs)
print(json.dumps({"full": full, "buckets": buckets, "stagger_runs": stagger_runs(), "tft": run.tft_count,
                  "fallback": run.fallback_count, "model": run.model_name}))
"""


def _measure(tree: Path, db: str, script: str, *args: str) -> dict:
    done = subprocess.run([str(tree / ".venv/bin/python"), "-c", script, *args], cwd=tree, env=regression._env(db),
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"measure in {tree} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _phase_medians(runs: list[dict]) -> dict:
    names = sorted({p for r in runs for p in r["phases"]})
    return {p: common.summary([r["phases"][p] for r in runs if p in r["phases"]], 4)["median"] for p in names}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.schedule", description=__doc__)
    p.add_argument("old_tree", type=Path)
    p.add_argument("--servers", type=int, default=10_000)
    p.add_argument("--reps", type=int, default=3, help="old: whole runs; new: buckets of scheduled runs")
    p.add_argument("--rounds", type=int, default=1, help="processes per tree, alternating")
    p.add_argument("--name", default="schedule")
    args = p.parse_args(argv)
    new_tree, old_tree = common.ROOT, args.old_tree.resolve()
    interval = 60
    os.environ["TFT_PREDICTION_INTERVAL_SECONDS"] = str(interval)
    os.environ.setdefault("TFT_RUN_STALE_SECONDS", "3600")  # a loaded 2-core box may take minutes a run
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    regression._recreate(regression.DB_NEW, new_tree)
    regression._recreate(regression.DB_OLD, old_tree)
    regression._seed(args.servers)
    print(f"[{time.strftime('%H:%M:%S')}] seeded {args.servers} servers in {time.perf_counter() - started:.0f} s, "
          f"load {os.getloadavg()[0]:.2f}", flush=True)
    old_runs, new_results, loads = [], [], []
    for rnd in range(args.rounds):
        res = _measure(old_tree, regression.DB_OLD, MEASURE_OLD, str(args.reps))
        old_runs += res["runs"]
        loads.append(("old", round(os.getloadavg()[0], 2)))
        print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} old: runs {[round(r['s'], 2) for r in res['runs']]}, "
              f"load {loads[-1][1]}", flush=True)
        if rnd:  # the new tree's database holds the previous round's runs and buckets: start it afresh
            regression._recreate(regression.DB_NEW, new_tree)
            regression._seed(args.servers)
        new = _measure(new_tree, regression.DB_NEW, MEASURE_NEW, str(args.reps), str(interval))
        new_results.append(new)
        loads.append(("new", round(os.getloadavg()[0], 2)))
        print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} new: full {new['full']['s']:.2f} s, buckets "
              f"{[[round(r['s'], 2) for r in b] for b in new['buckets']]}, load {loads[-1][1]}", flush=True)
    minute_runs = [r for new in new_results for b in new["buckets"] for r in b]
    bucket_sums = [sum(r["s"] for r in b) for new in new_results for b in new["buckets"]]
    full_runs = [new["full"] for new in new_results]
    old_minute = common.summary([r["s"] for r in old_runs], 2)
    new_minute = common.summary([r["s"] for r in minute_runs], 2)
    result = {
        **regression.comparison_header(args.name, "python -m bench.schedule " + " ".join(sys.argv[1:] if argv is None
                                                                                         else argv),
                                       new_tree, old_tree, load_start),
        "servers": args.servers, "interval_s": interval, "loads_after_each_measure": loads,
        "old": {"per_minute_s": old_minute, "phases_median_s": _phase_medians(old_runs), "model": res["model"],
                "tft": res["tft"], "fallback": res["fallback"]},
        "new": {"per_minute_s": new_minute,
                "per_minute_max_s": round(max(r["s"] for r in minute_runs), 2),
                "per_bucket_s": common.summary(bucket_sums, 2),
                "forecasted_per_run": [r["forecasted"] for r in minute_runs],
                "served_per_run": sorted({r["served"] for r in minute_runs}),
                "phases_median_s": _phase_medians(minute_runs),
                "full_run_s": common.summary([f["s"] for f in full_runs], 2),
                "full_run_phases_s": _phase_medians(full_runs),
                "stagger_runs": new_results[-1]["stagger_runs"], "model": new_results[-1]["model"],
                "tft": new_results[-1]["tft"], "fallback": new_results[-1]["fallback"]},
        "ratio_new_to_old_per_minute": round(new_minute["median"] / old_minute["median"], 3),
        "raw": {"old": old_runs, "new": new_results},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    path = common.write_json(args.name, result)
    print(f"old per minute {old_minute['median']} s; new per minute {new_minute['median']} s "
          f"(max {result['new']['per_minute_max_s']}), per bucket {result['new']['per_bucket_s']['median']} s, "
          f"full run {result['new']['full_run_s']['median']} s; results {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
