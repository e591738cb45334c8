"""Section 3: GET /predictions/current (and the dashboard fleet page) p50/p99 through gunicorn."""

from __future__ import annotations

from bench.common import ADMIN_PASSWORD, ADMIN_USER, API_KEY, summary
from bench.ingest import loadgen

FLEET_PAGE = "/dashboard/"


def fleet_page_exists(base: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(base + "/dashboard/login/", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def run_reads(base: str, n: int, *, reps: int, duration: float, connections: int, log) -> dict:
    out = {}
    targets = [("predictions_current", "/predictions/current", None)]
    if fleet_page_exists(base):
        targets.append(("fleet_page", FLEET_PAGE, {"path": "/dashboard/login/", "username": ADMIN_USER,
                                                   "password": ADMIN_PASSWORD}))
    else:
        out["fleet_page"] = {"skipped": "no dashboard login page at /dashboard/login/"}
    for name, path, login in targets:
        runs = []
        for rep in range(reps):
            r = loadgen({"mode": "get", "base": base, "api_key": API_KEY, "path": path, "login": login,
                         "connections": connections, "duration": duration})
            log(f"read {name} {n} servers rep {rep + 1}: {r['rps']} req/s, p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
                f"{r['mb_per_s']} MB/s, errors {r['errors']} {r['error_samples'][:1]}")
            runs.append(r)
        out[name] = {
            "path": path,
            "connections": connections,
            "rps": summary([r["rps"] for r in runs]),
            "p50_ms": summary([r["p50_ms"] for r in runs]),
            "p99_ms": summary([r["p99_ms"] for r in runs]),
            "body_kb": round(runs[-1]["mb_per_s"] * 1000 / runs[-1]["rps"], 1) if runs[-1]["rps"] else None,
            "errors": sum(r["errors"] for r in runs),
            "error_samples": [s for r in runs for s in r["error_samples"]][:3],
        }
    return out
