"""Can the trend rule tell a step from a ramp? Gates measured on development sources (issue 23, round 10).

    python -m bench.trend_steps --source nab=data/nab,data/nab_extra --source smd=data/smd \
        --source jumpstarter=data/jumpstarter --source azure_vm=data/azure_vm --source sim=sim:10:7:1000 \
        --quiet quiet=sim:20:7:3:quiet --out bench/results/alert_replay/trend_steps_r10.json

On a simulated fleet without incidents the served trend warning (``alert_rules.Trend`` 2 h / 4 h /
15 min) opens whenever a batch job lifts a server's CPU in one step: a line through the step reaches
the limit. This replays the shipped trend beside the same rule with one gate at a time, the way
``bench.trend_choice`` replays the rule (same series, origins, limits, incidents, hysteresis and
scoring; the server's alert for any metric), and reports the mean over the development sources and
each quiet fleet's false alerts per server-day:

- ``halves@b``: the slopes of both halves of the fit window are at least b × the whole line's;
- ``familiar@r``: not where the server already spent at least r of the day before the fit window at
  or above its level now (the mean of its last 15 min);
- ``jump@g``: not where one 5-minute change carries more than g of the line's rise over the window;
- ``theil_sen``: the line is the Theil–Sen (median of pairwise slopes) line, not least squares;
- ``state@s``: not where the server reports one of the states s at a bucket of the hold (what is
  served since round 10: ``alert_rules.expected_climb``, here by the bench's own code);
  ``state_fit@s``: not where it does at any bucket of the fit window.

A measurement: the choice it led to (the state gate) was made from these development figures only.
Never point it at data/holdout*.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench import trend_choice as tc

logger = logging.getLogger("bench.trend_steps")

HALVES = (0.0, 0.25, 0.5, 0.75)
FAMILIAR = (0.02, 0.05, 0.1, 0.2)
JUMPS = (0.3, 0.5, 0.7)
STATE_SETS = (("heavy_load",), ("heavy_load", "morning_spike"))
DAY = 288  # buckets of context the service reads


def _segments(y: np.ndarray, ends: np.ndarray, length: int) -> np.ndarray:
    """(n, length, C) the `length` buckets before each end (NaN before the series starts)."""
    idx = np.asarray(ends, dtype=np.int64)[:, None] + np.arange(-length, 0)[None, :]
    return np.where((idx >= 0)[:, :, None], y[np.clip(idx, 0, len(y) - 1)], np.nan)


def _slope(y: np.ndarray, ends: np.ndarray, fit: int) -> np.ndarray:
    from forecasting.engine.alert_rules import Trend, trend_projection

    return trend_projection(y, ends, Trend(fit, 2, 1)) - trend_projection(y, ends, Trend(fit, 1, 1))


def halves_ok(y, ends, trend, b: float) -> np.ndarray:
    full = _slope(y, ends, trend.fit)
    half = trend.fit // 2
    late, early = _slope(y, ends, half), _slope(y, np.asarray(ends) - half, half)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num((late >= b * full) & (early >= b * full), nan=0).astype(bool)


def familiar(y, ends, trend, r: float, recent: int = 3) -> np.ndarray:
    level = np.nanmean(_segments(y, ends, recent), axis=1)
    before = _segments(y, np.asarray(ends) - trend.fit, DAY - trend.fit)
    with np.errstate(invalid="ignore"):
        share = np.nanmean(before >= level[:, None, :], axis=1)
        present = np.isfinite(before).sum(axis=1) >= (DAY - trend.fit) // 2
        return np.nan_to_num(present & (share >= r), nan=0).astype(bool)


def jump_ok(y, ends, trend, g: float) -> np.ndarray:
    jump = np.nanmax(np.diff(_segments(y, ends, trend.fit), axis=1), axis=1)
    rise = _slope(y, ends, trend.fit) * (trend.fit - 1)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(jump <= g * rise, nan=0).astype(bool)


def theil_sen_crossing(y, ends, critical, trend) -> np.ndarray:
    x = np.arange(-trend.fit, 0, dtype=np.float64)
    i, j = np.triu_indices(trend.fit, 1)
    held = np.ones((len(ends), y.shape[1]), dtype=bool)
    for back in range(trend.hold):
        seg = _segments(y, np.asarray(ends) - back, trend.fit)
        slope = np.nanmedian((seg[:, j] - seg[:, i]) / (j - i)[None, :, None], axis=1)
        level = np.nanmedian(seg - slope[:, None, :] * x[None, :, None], axis=1)
        held &= np.nan_to_num(level + slope * (trend.reach - 1), nan=-np.inf) >= critical[None, :]
    return held


def declared(states: np.ndarray, ends, names: tuple[str, ...]) -> np.ndarray:
    """(n, 1) True where the server's last bucket before each end reports one of the states `names`."""
    from forecasting.engine.spec import STATE_INDEX

    codes = np.array([STATE_INDEX[n] for n in names])
    last = np.asarray(ends, dtype=np.int64) - 1
    return np.isin(states[np.clip(last, 0, len(states) - 1)], codes)[:, None]


def _held(gate, y, origins, trend, value) -> np.ndarray:
    """The gate at each of the hold's bucket ends (as trend_crossing holds the crossing)."""
    out = np.ones((len(origins), y.shape[1]), dtype=bool)
    for back in range(trend.hold):
        out &= gate(y, np.asarray(origins) - back, trend, value)
    return out


def replay_source(spec: str, every: int) -> dict[str, dict]:
    from forecasting.alerts.selectors import alert_hysteresis, alert_trend
    from forecasting.engine import alert_replay as ar
    from forecasting.engine.alert_rules import Hysteresis, trend_crossing

    trend = dataclasses.replace(alert_trend(), expected=())  # the line alone; the state gates are rows below
    served = alert_hysteresis()
    at_stride = Hysteresis(
        {k: -(-v // every) for k, v in served.open_after.items()},
        {k: -(-v // every) for k, v in served.resolve_after.items()},
    )
    per_family: dict[str, dict] = {}
    warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (gaps) read as "no gate" below
    for family, y, states, origins, critical in tc._cases(tc._load(spec), every):
        base = trend_crossing(y, origins, critical, trend)
        gated = {"trend": base, "theil_sen": theil_sen_crossing(y, origins, critical, trend)}
        gated.update({f"halves@{b:g}": base & _held(halves_ok, y, origins, trend, b) for b in HALVES})
        gated.update({f"familiar@{r:g}": base & _held(lambda *a: ~familiar(*a), y, origins, trend, r)
                      for r in FAMILIAR})  # fmt: skip
        gated.update({f"jump@{g:g}": base & _held(jump_ok, y, origins, trend, g) for g in JUMPS})
        for names in STATE_SETS:
            quiet_now = np.zeros((len(origins), 1), dtype=bool)
            for back in range(trend.hold):
                quiet_now |= declared(states, np.asarray(origins) - back, names)
            gated[f"state@{'+'.join(names)}"] = base & ~quiet_now
            in_fit = np.zeros((len(origins), 1), dtype=bool)
            for back in range(trend.fit):
                in_fit |= declared(states, np.asarray(origins) - back, names)
            gated[f"state_fit@{'+'.join(names)}"] = base & ~in_fit
        codes = {name: c.max(axis=1, keepdims=True).astype(np.int64) for name, c in gated.items()}
        codes = {f"{ar.TREND_SERVER}@{name}": c for name, c in codes.items()}
        counts = ar.replay_series(y, states, origins, codes, critical, dict.fromkeys(codes, at_stride), every=every)
        fam = per_family.setdefault(family, {})
        for rule, c in counts.items():
            fam.setdefault(rule, ar.Counts()).add(c)
    reports = {f: {r: c.report() for r, c in rules.items()} for f, rules in per_family.items()}
    return ar.pooled(reports, rules=list(next(iter(reports.values()))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", required=True, metavar="NAME=SPEC")
    parser.add_argument("--quiet", action="append", default=[], metavar="NAME=SPEC",
                        help="a fleet without incidents (sim:N:DAYS:SEED:quiet), out of the means")
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args(argv)
    tc.refuse_held_out(parser, opts.source + opts.quiet)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    tc._django()
    started = time.monotonic()
    sources = {name: replay_source(spec, opts.every) for name, _, spec in (s.partition("=") for s in opts.source)}
    quiet = {name: replay_source(spec, opts.every) for name, _, spec in (s.partition("=") for s in opts.quiet)}
    rules = list(next(iter(sources.values())))
    table = {}
    for rule in rules:
        recalls = [s[rule]["recall_15m"] for s in sources.values() if s[rule]["recall_15m"] is not None]
        table[rule] = {
            "recall_15m": float(np.mean(recalls)) if recalls else None,
            "false_alerts_per_server_day": float(np.mean([s[rule]["false_alerts_per_server_day"] for s in sources.values()])),
            **{f"{name}_false_alerts_per_server_day": q[rule]["false_alerts_per_server_day"] for name, q in quiet.items()},
        }  # fmt: skip
        print(f"{rule:28} " + " ".join(f"{k} {v:.3f}" for k, v in table[rule].items() if v is not None))
    if opts.out:
        opts.out.write_text(json.dumps({
            "what": "trend warning with step / ramp gates: mean over development sources (families equal within "
                    "each) and the false alerts of each quiet fleet; a measurement, nothing served",
            "command": "python -m bench.trend_steps " + " ".join(argv or sys.argv[1:]),
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.monotonic() - started, 1),
            "mean_over_sources": table,
            "per_source": {name: {r: {k: tc._rounded(v) for k, v in row.items() if k in tc.KEYS}
                                  for r, row in rows.items()} for name, rows in {**sources, **quiet}.items()},
        }, separators=(",", ":"), default=lambda x: None))  # fmt: skip


if __name__ == "__main__":
    main()
