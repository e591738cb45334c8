"""``python -m bench.ingest_shapes [--old-tree PATH]`` — POST /feed/data by batch shape, beside raw COPY.

Issue 25: the guide tells a feeder to send all its servers in one batch (N servers × 1 timestamp),
and that shape touches one server row, one rollup row and one day-count row per record, where a
backfill-like batch (20 servers × 50 timestamps) touches 20 of each. Every batch here holds 1,000
records; three shapes: 20 × 50, 200 × 5 and 1,000 × 1. Four feeders (``--fleets``), each with
its own servers, over ``--connections`` client connections, against gunicorn (3 sync workers,
production settings) from each tree on that tree's own database, migrated by its own code. In
the same run, raw ``COPY`` of contract-shaped rows into ``ingest_metricrecord`` of the same
database, for 20 and for 1,000 fresh servers.

Alternating: every repetition runs each tree (the order flips every repetition) and, within a
tree, each shape (the order rotates) and then the COPYs, so trees and shapes share the machine's
load; figures are medians over repetitions, with the load average before each measurement. The
old tree needs its own ``.venv`` (a symlink to this one's is fine):

    mkdir /tmp/main_tree && git archive main | tar -x -C /tmp/main_tree && ln -s $PWD/.venv /tmp/main_tree/.venv
    .venv/bin/python -m bench.ingest_shapes --old-tree /tmp/main_tree
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import common
from bench.ingest import TimeCursor, copy_rows_per_s, loadgen
from bench.regression import _env, _recreate

SHAPES = ((20, 50), (200, 5), (1000, 1))
BATCH = 1000


def _shape_name(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _commit(tree: Path) -> str:
    marker = tree / ".bench-commit"  # a tree extracted with git archive has no .git
    if marker.exists():
        return marker.read_text().strip()
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    return done.stdout.strip()


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _spec(base: str, cursor: TimeCursor, shape: tuple[int, int], label: str, args, *, duration: float,
          count: int) -> dict:
    servers = [f"{label}s{shape[0]}n{i:04d}" for i in range(shape[0])]
    n_ts = -(-BATCH * count // shape[0])  # an upper bound for every fleet
    return {"mode": "feed", "base": base, "api_key": common.API_KEY, "servers": servers, "batch": BATCH,
            "count": count, "fleets": args.fleets, "t0": cursor.take(n_ts), "step": 1.0,
            "connections": args.connections, "duration": duration}


def _measure(spec: dict, web_pids: list[int], db: str) -> dict:
    web0, pg0 = common.cpu_seconds(web_pids), common.cpu_seconds(common.bench_backend_pids(db))
    load = round(os.getloadavg()[0], 2)
    result = loadgen(spec)
    web1, pg1 = common.cpu_seconds(web_pids), common.cpu_seconds(common.bench_backend_pids(db))
    n = max(1, result["requests"])
    return {"records_per_s": result["records_per_s"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"],
            "errors": result["errors"], "error_samples": result["error_samples"][:2],
            "bodies_exhausted": result["bodies_exhausted"], "requests": result["requests"],
            "web_cpu_ms_per_req": round(common.cpu_delta(web0, web1) * 1000 / n, 2),
            "pg_cpu_ms_per_req": round(common.cpu_delta(pg0, pg1) * 1000 / n, 2),
            "client_cpu_ms_per_req": round(result["client_cpu_s"] * 1000 / n, 2), "load1": load}


def _copies(db: str, label: str, rep: int, rows: int, t0: float) -> dict:
    import psycopg

    dsn = common.pg_bench_dsn().rsplit("dbname=", 1)[0] + f"dbname={db}"
    out = {}
    with psycopg.connect(dsn) as conn:
        for servers in (20, 1000):
            out[f"copy_{servers}_servers"] = copy_rows_per_s(conn, prefix=f"{label}copy{servers}r{rep}x", rows=rows,
                                                             servers=servers, t0=t0)
    return out


def _summarise(runs: list[dict]) -> dict:
    out = {k: common.summary([r[k] for r in runs], 1 if k in ("records_per_s", "p50_ms", "p99_ms") else 2)
           for k in ("records_per_s", "p50_ms", "p99_ms", "web_cpu_ms_per_req", "pg_cpu_ms_per_req",
                     "client_cpu_ms_per_req", "load1")}
    out["errors"] = sum(r["errors"] for r in runs)
    out["error_samples"] = [s for r in runs for s in r["error_samples"]][:3]
    out["bodies_exhausted"] = any(r["bodies_exhausted"] for r in runs)
    return out


def _ratios(tree: dict) -> dict:
    med = {k: v["records_per_s"]["median"] for k, v in tree["shapes"].items()}
    copies = {k: v["median"] for k, v in tree["copy_rows_per_s"].items()}
    guide, backfill = med[_shape_name(SHAPES[-1])], med[_shape_name(SHAPES[0])]
    return {
        "guide_to_backfill": round(guide / backfill, 3),
        **{f"guide_to_{k}": round(guide / v, 3) for k, v in copies.items()},
        **{f"backfill_to_{k}": round(backfill / v, 3) for k, v in copies.items()},
    }


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(prog="python -m bench.ingest_shapes", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old-tree", type=Path, help="also measure this checkout (e.g. main), alternating")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per shape and repetition")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--fleets", type=int, default=4, help="feeders, each with its own servers")
    p.add_argument("--workers", type=int, default=3, help="gunicorn sync workers")
    p.add_argument("--copy-rows", type=int, default=200_000)
    p.add_argument("--name", default="ingest_shapes")
    p.add_argument("--warm-records", type=int, default=150,
                   help="records per server fed before measuring (150 = the default TFT_WARMUP_RECORDS: a fleet "
                        "past warm-up, the steady state); 0: two batches per fleet, servers still warming up")
    args = p.parse_args(argv)
    if args.reps < 3:
        p.error("--reps must be at least 3")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    uptime_start = _uptime()
    trees = {"new": common.ROOT}
    if args.old_tree:
        trees["old"] = args.old_tree.resolve()
    dbs = {label: f"tftsite_bench_{args.name}_{label}" for label in trees}
    count = int(80 * args.duration)  # bodies prepared per measurement: more than 2 cores can store
    t0 = (datetime.now(UTC) - timedelta(days=12)).timestamp()
    cursors = {label: TimeCursor(datetime.fromtimestamp(t0, tz=UTC)) for label in trees}
    runs = {label: {_shape_name(s): [] for s in SHAPES} for label in trees}
    copies: dict[str, dict[str, list[float]]] = {label: {} for label in trees}
    copy_t0 = t0 - 86_400  # a day before the feed's timestamps
    with contextlib.ExitStack() as stack:
        servers = {}
        for label, tree in trees.items():
            _recreate(dbs[label], tree)
            base, proc = stack.enter_context(common.gunicorn(workers=args.workers, tree=tree, env=_env(dbs[label]),
                                                             name=f"gunicorn_{label}"))
            servers[label] = (base, common.web_worker_pids(proc))
            for shape in SHAPES:  # warm-up: creates every fleet's servers and first buckets
                bodies = max(2, -(-args.warm_records // shape[1]) + 1) * args.fleets  # per fleet: records/server
                loadgen(_spec(base, cursors[label], shape, label, args, duration=1.0 if not args.warm_records else 600.0,
                              count=bodies))
        for rep in range(args.reps):
            order = list(trees) if rep % 2 == 0 else list(trees)[::-1]
            for label in order:
                base, pids = servers[label]
                shapes = SHAPES[rep % len(SHAPES):] + SHAPES[: rep % len(SHAPES)]
                for shape in shapes:
                    r = _measure(_spec(base, cursors[label], shape, label, args, duration=args.duration, count=count),
                                 pids, dbs[label])
                    runs[label][_shape_name(shape)].append(r)
                    print(f"[{time.strftime('%H:%M:%S')}] rep {rep + 1} {label} {_shape_name(shape)}: "
                          f"{r['records_per_s']:,.0f} records/s, p50 {r['p50_ms']} ms, web {r['web_cpu_ms_per_req']} "
                          f"ms/req, postgres {r['pg_cpu_ms_per_req']} ms/req, errors {r['errors']}, load {r['load1']}",
                          flush=True)
                for k, v in _copies(dbs[label], label, rep, args.copy_rows, copy_t0 + rep * 3600).items():
                    copies[label].setdefault(k, []).append(v)
                    print(f"[{time.strftime('%H:%M:%S')}] rep {rep + 1} {label} {k}: {v:,.0f} rows/s", flush=True)
    result: dict = {
        "name": args.name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.ingest_shapes " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"nproc": os.cpu_count(), "uptime_start": uptime_start, "uptime_end": _uptime()},
        "setup": {"batch_records": BATCH, "connections": args.connections, "fleets": args.fleets,
                  "gunicorn_sync_workers": args.workers, "duration_s": args.duration, "reps": args.reps,
                  "copy_rows": args.copy_rows, "warm_records_per_server": args.warm_records},
        "trees": {},
    }
    for label, tree in trees.items():
        entry = {"commit": _commit(tree), "shapes": {k: _summarise(v) for k, v in runs[label].items()},
                 "copy_rows_per_s": {k: common.summary(v, 0) for k, v in copies[label].items()}}
        entry["ratios"] = _ratios(entry)
        result["trees"][label] = entry
    if "old" in trees:
        new, old = result["trees"]["new"], result["trees"]["old"]
        result["new_to_old"] = {
            k: round(new["shapes"][k]["records_per_s"]["median"] / old["shapes"][k]["records_per_s"]["median"], 3)
            for k in new["shapes"]
        }
    result["wall_s"] = round(time.perf_counter() - started, 1)
    path = common.write_json(args.name, result)
    print(json.dumps({label: {"records_per_s": {k: v["records_per_s"]["median"] for k, v in t["shapes"].items()},
                              "copy": {k: v["median"] for k, v in t["copy_rows_per_s"].items()},
                              "ratios": t["ratios"]} for label, t in result["trees"].items()}, indent=1))
    if "new_to_old" in result:
        print("new / old records/s per shape:", result["new_to_old"])
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
