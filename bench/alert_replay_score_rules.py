"""Offline replay of incident_prob threshold variants (issue 23) from what a backtest run kept
(bench/alert_replay_dump_backtest.py npz), so many thresholds are swept without forecasting again:
same series, origins, limits, incidents and scoring code as engine.alert_replay; only the codes
differ. "abs@τ": τ alone; "hist@τxλ": max(τ, λ × the series' own incident base rate) (what
engine.alert_rules.incident_prob_threshold now serves the replay); "pmean@τxλ": max(τ, λ × the
series' mean P over the previous day). Also served / served_p50 (from the npz), predict_linear and
static_threshold. ONLY="K/M,..." keeps the chosen rule at those points (held-out sets). Usage:
    python bench/alert_replay_score_rules.py OUT.json NPZ[,NPZ] EVERY (--csv-dir DIR ... | --simulated N --days D --seed S)
"""

import json
import os
import sys
from pathlib import Path

import django
import numpy as np

ROOT = str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)
os.chdir(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tftsite.settings")
django.setup()

from forecasting.engine import alert_replay as ar  # noqa: E402
from forecasting.engine import backtest as bt  # noqa: E402
from forecasting.engine import event_model as em  # noqa: E402
from forecasting.engine.folders import read_event_model  # noqa: E402
from forecasting.engine.probability import limits_batch  # noqa: E402
from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, METRICS, QUANTILES  # noqa: E402
from forecasting.management.commands import backtest as cmd  # noqa: E402

out_path, npz_path, every = sys.argv[1], sys.argv[2], int(sys.argv[3])
rest = sys.argv[4:]
opts = {
    "csv_dir": [],
    "simulated": None,
    "days": 14.0,
    "seed": 1000,
    "metric": "auto",
    "exclude": [],
    "metrics": None,
    "servers": None,
}
i = 0
while i < len(rest):
    a = rest[i]
    if a == "--csv-dir":
        opts["csv_dir"].append(Path(rest[i + 1]))
    elif a == "--simulated":
        opts["simulated"] = int(rest[i + 1])
    elif a == "--days":
        opts["days"] = float(rest[i + 1])
    elif a == "--seed":
        opts["seed"] = int(rest[i + 1])
    i += 2
opts["csv_dir"] = opts["csv_dir"] or None
source = cmd._series_source(opts)
dump = {}
for part in npz_path.split(","):
    with np.load(part) as z:
        dump.update({k: z[k] for k in z.files})
model = read_event_model(Path("models/tft_model_20261202T135112Z"))
setup = bt.ProbabilitySetup(QUANTILES, DEFAULT_THRESHOLDS, event_model=model, min_buckets=2)
metrics = source.metrics
mapped = isinstance(metrics, dict)
simulated = {w.server for w in source.truth.windows} if source.truth is not None else set()

ABS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
FLOORS = (0.05, 0.1, 0.2, 0.3)
LAMBDAS = (1.0, 1.5, 2.0, 3.0)
PLAMBDAS = (1.5,)
HYST = [
    h
    for h in ar.FRONTIER
    if h.open_after["warning"] == h.open_after["critical"]
    and h.open_after["critical"] <= 3
    and h.resolve_after["critical"] >= 3
]
HYST += [ar.Hysteresis({"warning": 1, "critical": 1}, {"warning": 2, "critical": 2})]  # stride 12: the served K/M
if os.environ.get("ONLY"):  # held out: the chosen rule only, at the given K/M points
    ABS, FLOORS, LAMBDAS, PLAMBDAS = (0.3,), (0.05,), (1.5,), ()
    pts = [tuple(map(int, x.split("/"))) for x in os.environ["ONLY"].split(",")]
    HYST = [ar.Hysteresis({"warning": k, "critical": k}, {"warning": m, "critical": m}) for k, m in pts]
DAY = 288


def trailing_mean(p, origins, steps):
    """mean of p at earlier origins within `steps` before each origin (0 without any)."""
    out = np.zeros(len(p))
    c = np.concatenate(([0.0], np.cumsum(p)))
    lo = np.searchsorted(origins, origins - steps, side="left")
    idx = np.arange(len(p))
    n = idx - lo
    s = c[idx] - c[lo]
    out[n > 0] = s[n > 0] / n[n > 0]
    return out


acc = {}  # (rule, hyst index) -> family -> Counts
for w in source.series:
    if f"{w.server}|p" not in dump:
        continue
    origins, p = dump[f"{w.server}|origins"], dump[f"{w.server}|p"]
    assert np.array_equal(origins, bt.rolling_origins(len(w.values), every=every)), w.server
    cols = [METRICS.index(m) for m in bt._metric_tuple(metrics.get(w.server) if mapped else metrics)]
    ctx = w.values[max(0, int(origins[0]) - CONTEXT) : int(origins[0])].astype(np.float64)
    warning, critical = (a[0, cols] for a in limits_batch(ctx[None], dict(DEFAULT_THRESHOLDS), METRICS))
    y = w.values[:, cols].astype(np.float64)
    hist = bt.incident_history(w, cols, origins, setup)["8h"]
    share = em.history_share(hist, "8h")
    pmean = trailing_mean(p, origins, DAY)
    codes = {}
    for t in ABS:
        codes[f"abs@{t:g}"] = ar.probability_codes(p, t)
    for f in FLOORS:
        for lam in LAMBDAS:
            codes[f"hist@{f:g}x{lam:g}"] = np.where(p >= np.maximum(f, lam * share), 2, 0)[:, None]
        for lam in PLAMBDAS:
            codes[f"pmean@{f:g}x{lam:g}"] = np.where(p >= np.maximum(f, lam * pmean), 2, 0)[:, None]
    family = (
        "simulated"
        if w.server in simulated
        else bt.series_family(w.server, None if mapped else bt._metric_tuple(metrics)[0])
    )
    if f"{w.server}|served" in dump:
        ref = {
            "served": dump[f"{w.server}|served"],
            "served_p50": dump[f"{w.server}|served_p50"],
            "predict_linear": ar.linear_codes(y, origins, critical),
        }
        for hi, h in enumerate(HYST):
            counts = ar.replay_series(y, w.states, origins, ref, critical, dict.fromkeys(ref, h), every=every)
            for rule, c in counts.items():
                acc.setdefault((rule, hi), {}).setdefault(family, ar.Counts()).add(c)
        counts = ar.replay_series(
            y,
            w.states,
            origins,
            {"static_threshold": ar.static_codes(y, origins, critical)},
            critical,
            {"static_threshold": ar.IMMEDIATE},
            every=every,
        )
        acc.setdefault(("static_threshold", -1), {}).setdefault(family, ar.Counts()).add(counts["static_threshold"])
    for hi, h in enumerate(HYST):
        counts = ar.replay_series(
            y,
            w.states,
            origins,
            {f"incident_prob@{k}": c for k, c in codes.items()},
            critical,
            dict.fromkeys([f"incident_prob@{k}" for k in codes], h),
            every=every,
        )
        for rule, c in counts.items():
            acc.setdefault((rule, hi), {}).setdefault(family, ar.Counts()).add(c)

rows = []
for (rule, hi), fams in acc.items():
    rep = {f: {rule: c.report()} for f, c in fams.items()}
    pool = ar.pooled(rep, rules=(rule,))[rule]
    h = HYST[hi] if hi >= 0 else ar.IMMEDIATE
    rows.append(
        {
            "rule": rule.split("@", 1)[-1],
            "K": h.open_after["critical"],
            "M": h.resolve_after["critical"],
            "pooled": pool,
            "per_family": {f: r[rule] for f, r in rep.items()},
        }
    )
Path(out_path).write_text(json.dumps(bt_json := cmd._jsonable(rows), indent=1))
print(len(bt_json), "rows")
