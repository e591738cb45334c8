"""``python -m bench.ingest_regression OLD_TREE`` — the ingest statement, this tree vs an older one.

What a 1,000-record batch costs to store (``records_ingest``, in-process: no HTTP, no JSON) when
the only difference is the code: each tree gets its own database migrated by its own code, and
each measurement is a fresh process in its tree that stores ``--batches`` batches of 50 servers ×
20 new timestamps (a warm-up first; every timestamp is new, so nothing is a duplicate). The trees
alternate (old, new, old, new, …, ``--rounds`` each) so they share the machine's load; medians are
over every batch of a tree. Written for issue 17's per-day record counts (ingest 0005), kept to
compare any two trees. ``--shapes 20x50,200x5,1000x1`` measures several batch shapes (servers ×
timestamps, 1,000 records each; issue 25's guide shape is 1000x1) in the same rounds, each with
its own servers, and reports the new/old ratio per shape.

    git worktree add --detach /tmp/old_ingest 16ed899^ && ln -s $PWD/.venv /tmp/old_ingest/.venv
    .venv/bin/python -m bench.ingest_regression /tmp/old_ingest
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import common
from bench.regression import _env, _recreate, comparison_header

DB_NEW, DB_OLD = "tftsite_bench_ingest_new", "tftsite_bench_ingest_old"

# Run in each tree's own interpreter (cwd = that tree), so it may only use what both trees have.
# Round r of a tree writes seconds [r·batches·20, …) of the day after the bench day's midnight
# (a partition migrate created), so rounds never collide.
MEASURE = r"""
import json, sys, time
from datetime import UTC, datetime, timedelta
import django
django.setup()
from ingest.services import records_ingest
from ingest.validation import CleanRecord
batches, rnd = int(sys.argv[1]), int(sys.argv[2])
per = int(sys.argv[3]) if len(sys.argv) > 3 else 50
base = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
names = [f"ir{i:04d}" if per == 50 else f"ir{per}s{i:04d}" for i in range(1000)]
def batch(k):
    servers = names[(k * per) % 1000:(k * per) % 1000 + per]
    t0 = base + timedelta(seconds=(rnd * (batches + 3) + k) * 60)
    return [CleanRecord(n, t0 + timedelta(seconds=s), 40.0 + s % 7, 55.5, 12.0, 8.5, "healthy")
            for s in range(1000 // per) for n in servers]
for k in range(3):
    records_ingest(records=batch(k))
times = []
for k in range(3, batches + 3):
    b = batch(k)
    t = time.perf_counter(); r = records_ingest(records=b); times.append(time.perf_counter() - t)
    assert r.accepted == 1000, r
print(json.dumps({"batch_s": times}))
"""


def _measure(tree: Path, db: str, batches: int, rnd: int, per: int = 50) -> list[float]:
    done = subprocess.run([str(tree / ".venv/bin/python"), "-c", MEASURE, str(batches), str(rnd), str(per)], cwd=tree,
                          env=_env(db), capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"measure in {tree} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["batch_s"]


def _summarise(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    batch_ms = {k: v for k, v in common.summary(ms, 2).items() if k != "reps"}
    return {"records_per_s": round(1000 * len(times) / sum(times)), "batch_ms": batch_ms,
            "p99_ms": round(common.percentile(ms, 99), 2), "batches": len(times)}


def _shape(text: str) -> tuple[int, int]:
    servers, timestamps = (int(x) for x in text.split("x"))
    if servers * timestamps != 1000 or 1000 % servers:
        raise argparse.ArgumentTypeError(f"{text}: servers × timestamps must be 1,000")
    return servers, timestamps


def _compare(runs: dict[str, list[list[float]]]) -> dict:
    old = _summarise([t for r in runs["old"] for t in r])
    new = _summarise([t for r in runs["new"] for t in r])
    return {"old": old, "new": new, "ratio_new_to_old": {
        "records_per_s": round(new["records_per_s"] / old["records_per_s"], 3),
        "batch_ms_median": round(new["batch_ms"]["median"] / old["batch_ms"]["median"], 3),
    }, "per_round_records_per_s": {k: [_summarise(r)["records_per_s"] for r in v] for k, v in runs.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest_regression", description=__doc__)
    p.add_argument("old_tree", type=Path)
    p.add_argument("--batches", type=int, default=200, help="timed 1,000-record batches per process")
    p.add_argument("--rounds", type=int, default=3, help="processes per tree, alternating")
    p.add_argument("--shapes", default="50x20", help="batch shapes, servers x timestamps, comma-separated")
    p.add_argument("--name", default="ingest_regression")
    args = p.parse_args(argv)
    shapes = [_shape(s) for s in args.shapes.split(",")]
    new_tree, old_tree = common.ROOT, args.old_tree.resolve()
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    _recreate(DB_NEW, new_tree)
    _recreate(DB_OLD, old_tree)
    runs = {f"{n}x{t}": {"old": [], "new": []} for n, t in shapes}
    for rnd in range(args.rounds):
        for n, t in shapes:
            trees = (("old", old_tree, DB_OLD), ("new", new_tree, DB_NEW))
            for label, tree, db in trees if rnd % 2 == 0 else trees[::-1]:
                times = _measure(tree, db, args.batches, rnd, n)
                runs[f"{n}x{t}"][label].append(times)
                print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} {n}x{t} {label}: "
                      f"{_summarise(times)['records_per_s']:,} records/s, load {os.getloadavg()[0]:.2f}", flush=True)
    per_shape = {k: _compare(v) for k, v in runs.items()}
    command = "python -m bench.ingest_regression " + " ".join(sys.argv[1:] if argv is None else argv)
    first = per_shape[next(iter(per_shape))]
    result = {**comparison_header(args.name, command, new_tree, old_tree, load_start), **first,
              "shapes": per_shape, "wall_s": round(time.perf_counter() - started, 1)}
    path = common.write_json(args.name, result)
    for k, v in per_shape.items():
        print(f"{k}: old {v['old']['records_per_s']:,} records/s, new {v['new']['records_per_s']:,} records/s, "
              f"new/old {v['ratio_new_to_old']['records_per_s']}")
    print(f"results {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
