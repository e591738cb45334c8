"""``python -m bench [all|ingest|predict|read|memory|soak]`` — see bench/__init__.py and the README."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import common

SECTIONS = ("ingest", "predict", "read", "memory")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in load]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("section", nargs="?", default="all", choices=("all", *SECTIONS, "soak", "storage", "scoring"))
    p.add_argument("--reps", type=int, default=3, help="repetitions per figure (median, min, max); ≥ 3")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load repetition")
    p.add_argument("--sizes", default="20,200,1000", help="fleet sizes for the prediction cycle")
    p.add_argument("--ceiling-rows", type=int, default=200_000, help="rows per COPY / INSERT repetition")
    p.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    p.add_argument("--worker-class", default="sync", choices=("sync", "gthread"))
    p.add_argument("--threads", type=int, default=4, help="threads per gthread worker")
    p.add_argument("--minutes", type=int, default=10, help="soak length")
    p.add_argument("--name", help="results file name (default: the section)")
    p.add_argument("--max-rows", type=int, default=100_000_000, help="storage: largest table size")
    p.add_argument("--skip-index-variants", action="store_true", help="storage: no BRIN / no-index comparison")
    p.add_argument("--skip-read", action="store_true", help="storage: no read phase (ingest and prune only)")
    args = p.parse_args(argv)
    if args.reps < 3:
        p.error("--reps must be at least 3")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    if args.section == "storage":  # its own database: it grows to many GB and is dropped at the end
        common.DB_NAME = "tftsite_bench_storage"
    if args.section == "scoring":  # its own database: no web server, so it can run beside other sections
        common.DB_NAME = "tftsite_bench_scoring"
    common.apply_env()
    log(f"setting up database {common.DB_NAME} (dropped and recreated), Redis DB 14, static files")
    common.recreate_database()
    import django

    django.setup()
    results: dict = {"name": args.name or args.section, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                     "machine": machine(), "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
                     "gunicorn": {"workers": args.workers, "worker_class": args.worker_class,
                                  "threads": args.threads if args.worker_class == "gthread" else 1}}
    try:
        if args.section == "storage":
            from bench.storage import run_storage

            results["storage"] = run_storage(args, log)
        elif args.section == "scoring":
            from bench.scoring import run_scoring

            results["scoring"] = run_scoring(args, log)
        elif args.section == "soak":
            from bench.soak import run_soak

            results["soak"] = run_soak(args, log)
        else:
            run_sections(args, results)
    finally:
        results["wall_s"] = round(time.perf_counter() - started, 1)
        path = common.write_json(results["name"], results)
    from bench.report import table

    print()
    print(table(results))
    print(f"\n{results['machine']['nproc']} cores, {results['machine']['cpu']}; load average at start "
          f"{results['machine']['loadavg_at_start']}; wall {results['wall_s']} s; results: {path.relative_to(common.ROOT)}")
    return 0


def _memory_section(web, web_mem: dict, worker_mem: dict) -> dict:
    """Peak and current RSS of the web workers (after every load) and of the prediction workers."""
    web.check_alive()
    pids = common.web_worker_pids(web)
    mems = [common.proc_mem(pid) for pid in pids]
    memory = {
        "web": {**web_mem, "workers": len(pids),
                "max_vmhwm_mb": round(max(m.get("VmHWM", 0) for m in mems), 1),
                "vmrss_mb": [round(m.get("VmRSS", 0), 1) for m in mems],
                "master_vmhwm_mb": round(common.proc_mem(web.pid).get("VmHWM", 0), 1)},
        "worker": worker_mem,
    }
    log(f"web workers peak RSS: {[round(m.get('VmHWM', 0), 1) for m in mems]} MB")
    return memory


def run_sections(args, results: dict) -> None:
    from bench import ingest, predict, read, seed

    wanted = set(SECTIONS) if args.section == "all" else {args.section}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    with common.gunicorn(workers=args.workers, worker_class=args.worker_class, threads=args.threads) as (base, web):
        log(f"gunicorn {args.worker_class} × {args.workers} on {base}")
        web_mem = {"idle_vmrss_mb": [round(common.proc_mem(p).get("VmRSS", 0), 1) for p in common.web_worker_pids(web)]}
        if "ingest" in wanted or "memory" in wanted:
            res = ingest.run_http(base, reps=args.reps, duration=args.duration if "ingest" in wanted else 2.0, log=log,
                                  web_pids=common.web_worker_pids(web))
            if "ingest" in wanted:
                res["inprocess"] = ingest.run_inprocess(reps=args.reps, log=log)
                ceil = ingest.run_ceiling(reps=args.reps, rows=args.ceiling_rows, log=log)
                rec = res["batch1000"]["records_per_s"]["median"]
                ceil["ratio_copy"] = round(rec / ceil["copy_rows_per_s"]["median"], 2)
                ceil["ratio_insert"] = round(rec / ceil["insert_rows_per_s"]["median"], 2)
                res["ceiling"] = ceil
                results["ingest"] = res
            web.check_alive()
            web_mem["after_ingest_vmhwm_mb"] = [round(common.proc_mem(p).get("VmHWM", 0), 1)
                                                for p in common.web_worker_pids(web)]
        fleet_sizes = sorted(set(sizes if "predict" in wanted else [])
                             | ({20, 1000} if wanted & {"read", "memory"} else set()))
        info = predict.model_info()
        if info["path"] is None:
            # keep the whole run on the heuristic even if a model folder appears meanwhile
            empty = common.DATA_DIR / "no-models"
            empty.mkdir(parents=True, exist_ok=True)
            from django.conf import settings

            settings.TFT_MODELS_DIR = empty
            os.environ["TFT_MODELS_DIR"] = str(empty)
        if wanted & {"predict", "read", "memory"}:
            log(f"model: {info['name'] or info['note']}")
        cycles, worker_mem, reads = {}, {}, {}
        for n in fleet_sizes:
            t = time.perf_counter()
            seeded = seed.seed_fleet(n)
            log(f"seeded {seeded['servers']} servers, {seeded['buckets']} buckets in {time.perf_counter() - t:.1f} s")
            if "predict" in wanted and n in sizes:
                cycles[str(n)] = predict.time_cycles(n, reps=args.reps, log=log)
            else:
                from forecasting.runs.chunks import fleet_predict

                fleet_predict()  # one complete run to read
            if "memory" in wanted and n in (20, 1000):
                worker_mem[str(n)] = predict.worker_memory(n, log=log)
            if "read" in wanted and n in (20, 1000):
                reads[str(n)] = read.run_reads(base, n, reps=args.reps, duration=args.duration, connections=1, log=log)
        if "predict" in wanted:
            per_server = {n: cycles[str(n)]["total_s"]["median"] / n for n in sizes}
            results["predict"] = {
                "model": info, "cycles": cycles,
                "scaling": round(per_server[max(sizes)] / per_server[min(sizes)], 2) if len(sizes) > 1 else None,
                "forward": predict.forward_pass(info["path"], reps=args.reps, log=log),
                "gpu": "not run: no GPU in this session (10,000 servers needs one)",
            }
        if reads:
            results["read"] = reads
        if "memory" in wanted:
            results["memory"] = _memory_section(web, web_mem, worker_mem)

if __name__ == "__main__":
    sys.exit(main())
