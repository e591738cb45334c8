"""``python -m bench.regression OLD_TREE`` — the prediction read phase and cycle, this tree vs an older one.

Both trees read the same fleet: one database per tree, each migrated by its own code (the schemas
differ), with the same ``ingest_server`` and ``ingest_metricbucket`` rows (seeded here once by
bench.seed, copied into the other database). Each measurement is a fresh process in its tree: one
warm-up, then ``--reps`` timings of ``server_windows`` over the ready servers and ``--reps`` of the
whole in-process ``fleet_predict()`` (in a tree whose fleet_predict takes ``explain``, each
followed by one with ``explain="off"``: the cycle without issue #15's explanation pass). The trees alternate (old, new, old, new, …, ``--rounds`` each)
so they share the machine's load; medians are over every timing of a tree.

    git worktree add --detach /tmp/old_d464740 d464740 && ln -s $PWD/.venv /tmp/old_d464740/.venv
    .venv/bin/python -m bench.regression /tmp/old_d464740 --servers 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import common

DB_NEW, DB_OLD = "tftsite_bench_regr_new", "tftsite_bench_regr_old"
COPIED = ("ingest_server", "ingest_metricbucket")

# Run in each tree's own interpreter state (cwd = that tree), so it may only use what both trees have.
MEASURE = r"""
import json, sys, time
import django
django.setup()
from forecasting.registry import model_versions_sync
try:
    from forecasting.runs.chunks import fleet_predict
    from forecasting.windows import ready_server_ids, server_windows
except ImportError:  # a tree from before forecasting/ was grouped by concern (issue 21)
    from forecasting.selectors import ready_server_ids, server_windows
    from forecasting.services import fleet_predict
reps = int(sys.argv[1])
model_versions_sync()
ids = ready_server_ids()
server_windows(server_ids=ids)
reads = []
for _ in range(reps):
    t = time.perf_counter(); n = len(server_windows(server_ids=ids)); reads.append(time.perf_counter() - t)
import inspect
has_explain = "explain" in inspect.signature(fleet_predict).parameters
fleet_predict()
cycles, phases, cycles_off = [], [], []
for _ in range(reps):
    t = time.perf_counter(); run = fleet_predict(); cycles.append(time.perf_counter() - t)
    phases.append(dict(run.durations))
    if has_explain:
        t = time.perf_counter(); fleet_predict(explain="off"); cycles_off.append(time.perf_counter() - t)
print(json.dumps({"servers": len(ids), "windows": n, "read_s": reads, "cycle_s": cycles, "phases": phases,
                  "cycle_explain_off_s": cycles_off,
                  "tft": run.tft_count, "fallback": run.fallback_count, "model": run.model_name}))
"""


def _env(db: str) -> dict[str, str]:
    env = {**os.environ, **common.bench_env()}
    env["DATABASE_URL"] = env["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db
    env["TFT_DATA_DIR"] = str(common.DATA_DIR / db)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(common.DATA_DIR / db / "prometheus")
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    return env


def _recreate(db: str, tree: Path) -> None:
    import psycopg

    with psycopg.connect(common.pg_admin_dsn(), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {db}")
    subprocess.run([str(tree / ".venv/bin/python"), "manage.py", "migrate", "--noinput", "-v0"], cwd=tree,
                   env=_env(db), check=True)


def _seed(servers: int) -> None:
    """Seed the new tree's database with bench.seed (this process), then copy the rows to the old one."""
    import psycopg

    os.environ.update(_env(DB_NEW))
    import django

    django.setup()
    from bench.seed import seed_fleet

    seed_fleet(servers)
    dsn = common.pg_admin_dsn().replace("dbname=postgres", "dbname={}")
    with psycopg.connect(dsn.format(DB_NEW)) as src, psycopg.connect(dsn.format(DB_OLD)) as dst:
        dst.execute(f"TRUNCATE {', '.join(COPIED)} RESTART IDENTITY CASCADE")
        for table in COPIED:
            cols = [r[0] for r in src.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
                [table]).fetchall()]
            col_list = ", ".join(cols)
            with src.cursor().copy(f"COPY {table} ({col_list}) TO STDOUT") as out, \
                    dst.cursor().copy(f"COPY {table} ({col_list}) FROM STDIN") as into:
                for block in out:
                    into.write(block)
        dst.execute("SELECT setval(pg_get_serial_sequence('ingest_server', 'id'), (SELECT max(id) FROM ingest_server))")
        dst.execute("ANALYZE")
        dst.commit()


def _measure(tree: Path, db: str, reps: int) -> dict:
    done = subprocess.run([str(tree / ".venv/bin/python"), "-c", MEASURE, str(reps)], cwd=tree, env=_env(db),
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"measure in {tree} failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _short_head(tree: Path) -> str:
    marker = tree / ".bench-commit"  # a tree extracted with git archive has no .git: its commit, written beside it
    if marker.exists():
        return marker.read_text().strip()
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True).stdout.strip()


def comparison_header(name: str, command: str, new_tree: Path, old_tree: Path, load_start: list[float]) -> dict:
    """The fields every tree-vs-tree result starts with: what ran, where, on which two commits."""
    return {
        "name": name, "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "command": command,
        "machine": {"nproc": os.cpu_count(), "loadavg_at_start": load_start,
                    "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "new_commit": _short_head(new_tree), "old_commit": _short_head(old_tree),
    }


def _summarise(runs: list[dict]) -> dict:
    reads = [t for r in runs for t in r["read_s"]]
    cycles = [t for r in runs for t in r["cycle_s"]]
    phase_names = sorted({p for r in runs for d in r["phases"] for p in d})
    phases = {p: common.summary([d[p] for r in runs for d in r["phases"] if p in d], 4) for p in phase_names}
    off = [t for r in runs for t in r.get("cycle_explain_off_s", [])]
    last = runs[-1]
    return {"servers": last["servers"], "tft": last["tft"], "fallback": last["fallback"], "model": last["model"],
            "read_s": common.summary(reads, 3), "cycle_s": common.summary(cycles, 3), "phases_s": phases,
            "cycle_explain_off_s": common.summary(off, 3) if off else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.regression", description=__doc__)
    p.add_argument("old_tree", type=Path)
    p.add_argument("--servers", type=int, default=1000)
    p.add_argument("--reps", type=int, default=3, help="timings per process")
    p.add_argument("--rounds", type=int, default=2, help="processes per tree, alternating")
    p.add_argument("--name", default="read_regression")
    args = p.parse_args(argv)
    new_tree, old_tree = common.ROOT, args.old_tree.resolve()
    started = time.perf_counter()
    load_start = [round(x, 2) for x in os.getloadavg()]
    _recreate(DB_NEW, new_tree)
    _recreate(DB_OLD, old_tree)
    _seed(args.servers)
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for rnd in range(args.rounds):
        for label, tree, db in (("old", old_tree, DB_OLD), ("new", new_tree, DB_NEW)):
            res = _measure(tree, db, args.reps)
            runs[label].append(res)
            print(f"[{time.strftime('%H:%M:%S')}] round {rnd + 1} {label}: read {[round(t, 3) for t in res['read_s']]} "
                  f"cycle {[round(t, 3) for t in res['cycle_s']]} off {[round(t, 3) for t in res['cycle_explain_off_s']]} load {os.getloadavg()[0]:.2f}", flush=True)
    old, new = _summarise(runs["old"]), _summarise(runs["new"])
    command = "python -m bench.regression " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        **comparison_header(args.name, command, new_tree, old_tree, load_start), "old": old, "new": new,
        "ratio_new_to_old": {
            "read": round(new["read_s"]["median"] / old["read_s"]["median"], 3),
            "cycle": round(new["cycle_s"]["median"] / old["cycle_s"]["median"], 3),
            "cycle_explain_off": round(new["cycle_explain_off_s"]["median"] / old["cycle_s"]["median"], 3)
            if new["cycle_explain_off_s"] else None,
        },
        "runs": runs, "wall_s": round(time.perf_counter() - started, 1),
    }
    path = common.write_json(args.name, result)
    print(json.dumps({k: result[k] for k in ("ratio_new_to_old", "machine")}))
    print(f"old read {old['read_s']['median']} s, cycle {old['cycle_s']['median']} s; "
          f"new read {new['read_s']['median']} s, cycle {new['cycle_s']['median']} s; results {path}")
    for label in ("old", "new"):
        print(label, {k: v["median"] for k, v in (old if label == "old" else new)["phases_s"].items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
