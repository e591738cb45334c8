"""Choose the trend rule's fit / reach / hold / near on development series (issue 23). No forecaster needed.

    python -m bench.trend_choice --source nab=data/nab,data/nab_extra --source smd=data/smd \
        --source jumpstarter=data/jumpstarter --source azure_vm=data/azure_vm --source sim=sim:10:7:1000 \
        --every 3 --fits 12 18 24 36 --reaches 24 36 48 72 96 --holds 1 2 3 6 --nears 0 0.6 0.8 \
        --out bench/results/alert_replay/trend_choice_r9.json

The trend rule (``engine.alert_rules.trend_crossing``) reads the recent values only, so it is replayed
here without forecasting: the same series, origins, fixed limits, incidents and scoring code as
``backtest``'s alert replay (``engine.alert_replay.replay_series``), under the served hysteresis at
the stride (K 1, M 36 forecasts = 12 origins at ``--every 3``), as served: one alert per server for
any of its metrics ("trend@fit/reach/hold/near", in buckets), and per metric alone beside it
("metric_trend@…", a diagnostic). Each grid point is scored per family,
families weighted equally within a source (``alert_replay.pooled``), and the headline is the mean over
sources (a source with many families must not stand for the others). Beside it: ``predict_linear``
(Prometheus' ``predict_linear(x[1h], 8h) >= critical``) under the same hysteresis and at K 3 / M 6
(its best point on NAB development series, round 8), and the static threshold.

Each point is replayed as served: quiet while the series declares its climb expected (its states in
``--expected-states``, by default the served ``TFT_ALERT_TREND_EXPECTED_STATES``; round 10). The
choice: the grid point of the served form with the highest mean recall whose mean false alerts
per server-day are at most ``--max-false``: the issue's bound (0.5 a server-day) less what the rest of
the served rules already raise on the same development sources (``served_without_trend`` of the
development backtests, 0.25 in round 9), so that ``served`` as a whole stays within the bound.
Never point it at data/holdout*.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench.trend_choice")

FITS = (12, 24, 36)  # 1, 2, 3 h
REACHES = (12, 24, 48, 96)  # 1, 2, 4, 8 h
HOLDS = (1, 3, 6, 12)  # 5 min .. 1 h
NEARS = (0.0,)  # the line now at least this share of critical
KEYS = ("recall_15m", "false_alerts_per_server_day", "alert_minutes_per_server_day", "median_lead_minutes")


def _django():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tftsite.settings")
    import django

    django.setup()


def _load(spec: str):
    """A source spec: comma-separated csv dirs, or sim:N:DAYS:SEED (``sim:N:DAYS:SEED:quiet``: no incidents)."""
    from forecasting.management.commands.backtest import Command, _series_source

    parser = Command().create_parser("manage.py", "backtest")
    if spec.startswith("sim:"):
        _, n, days, seed, *quiet = spec.split(":")
        args = ["--simulated", n, "--days", days, "--seed", seed, *(["--no-incidents"] if quiet == ["quiet"] else [])]
    else:
        args = [a for d in spec.split(",") for a in ("--csv-dir", d)]
    opts = vars(parser.parse_args(args))
    return _series_source(opts)


def _cases(source, every: int):
    """Per series: (family, y, states, origins, critical)."""
    from forecasting.engine import backtest as bt
    from forecasting.engine.probability import limits_batch
    from forecasting.engine.spec import CONTEXT, DEFAULT_THRESHOLDS, METRICS

    metrics = source.metrics
    mapped = isinstance(metrics, dict)
    simulated = {w.server for w in source.truth.windows} if source.truth is not None else set()
    for w in source.series:
        ms = bt._metric_tuple(metrics.get(w.server) if mapped else metrics)
        origins = bt.rolling_origins(len(w.values), every=every)
        if not len(origins):
            continue
        cols = [METRICS.index(m) for m in ms]
        ctx = w.values[max(0, int(origins[0]) - CONTEXT) : int(origins[0])].astype(np.float64)
        critical = limits_batch(ctx[None], dict(DEFAULT_THRESHOLDS), METRICS)[1][0, cols]
        family = "simulated" if w.server in simulated else bt.series_family(w.server, None if mapped else ms[0])
        yield family, w.values[:, cols].astype(np.float64), w.states, origins, critical


def replay_source(spec: str, grid, every: int, expected: tuple[str, ...] = ()) -> dict[str, dict]:
    """rule → the source's families-equal figures (alert_replay.pooled), for each rule of the grid
    (each quiet where the series declares its climb expected: `expected` states)."""
    from forecasting.alerts.selectors import alert_hysteresis
    from forecasting.engine import alert_replay as ar
    from forecasting.engine.alert_rules import Hysteresis, Trend

    served = alert_hysteresis()
    at_stride = Hysteresis(
        {k: -(-v // every) for k, v in served.open_after.items()},
        {k: -(-v // every) for k, v in served.resolve_after.items()},
    )
    k3m6 = Hysteresis({"warning": 3, "critical": 3}, {"warning": 6, "critical": 6})
    per_family: dict[str, dict[str, ar.Counts]] = {}
    for family, y, states, origins, critical in _cases(_load(spec), every):
        codes = {}
        for f, r, h, n in grid:  # as served: the server's alert ("trend@…"); per metric alone ("metric_trend@…")
            per_metric = ar.trend_codes(y, origins, critical, Trend(f, r, h, n, expected), states)
            codes[f"metric_trend@{f}/{r}/{h}/{n:g}"] = per_metric
            codes[f"{ar.TREND_SERVER}@{f}/{r}/{h}/{n:g}"] = per_metric.max(axis=1, keepdims=True)
        linear = ar.linear_codes(y, origins, critical)
        rules = dict.fromkeys(codes, at_stride)
        codes.update({"predict_linear": linear, "predict_linear_k3m6": linear,
                      "static_threshold": ar.static_codes(y, origins, critical)})  # fmt: skip
        rules.update({"predict_linear": at_stride, "predict_linear_k3m6": k3m6, "static_threshold": ar.IMMEDIATE})
        for h in ar.FRONTIER:  # predict_linear's own frontier: its best point at the bound is the anchor
            name = f"predict_linear@{h.open_after['warning']}.{h.open_after['critical']}/{h.resolve_after['critical']}"
            codes[name], rules[name] = linear, h
        counts = ar.replay_series(y, states, origins, codes, critical, rules, every=every)
        fam = per_family.setdefault(family, {})
        for rule, c in counts.items():
            fam.setdefault(rule, ar.Counts()).add(c)
    reports = {f: {r: c.report() for r, c in rules_.items()} for f, rules_ in per_family.items()}
    names = list(next(iter(reports.values())))
    return ar.pooled(reports, rules=names)


def _rounded(x):
    return round(x, 4) if isinstance(x, float) else x


def _best(mean: dict, prefix: str, max_false: float, quiet: dict | None = None,
          max_quiet_false: float | None = None) -> str | None:  # fmt: skip
    """The rule named `prefix`… with the highest mean recall at most `max_false` false alerts a day
    (and, with `max_quiet_false`, at most that many on each quiet fleet of `quiet`)."""
    ok = [r for r, row in mean.items() if r.startswith(prefix) and row["false_alerts_per_server_day"] <= max_false]
    if max_quiet_false is not None:
        ok = [r for r in ok if all(q[r]["false_alerts_per_server_day"] <= max_quiet_false for q in (quiet or {}).values())]
    return max(ok, key=lambda r: mean[r]["recall_15m"] or 0.0) if ok else None


def refuse_held_out(parser: argparse.ArgumentParser, specs: list[str]) -> None:
    """Stop (argparse error) on a held-out set: these benches choose, and nothing held out is chosen on."""
    for spec in specs:
        if "holdout" in spec:
            parser.error(f"{spec}: held-out sets are never used for choices")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", required=True, metavar="NAME=SPEC",
                        help="NAME=dir[,dir...] or NAME=sim:N:DAYS:SEED (repeatable; each is one source)")
    parser.add_argument("--every", type=int, default=3, help="origin stride in 5-minute steps (default 3)")
    parser.add_argument("--fits", type=int, nargs="+", default=FITS)
    parser.add_argument("--reaches", type=int, nargs="+", default=REACHES)
    parser.add_argument("--holds", type=int, nargs="+", default=HOLDS)
    parser.add_argument("--nears", type=float, nargs="+", default=NEARS)
    parser.add_argument("--max-false", type=float, default=0.5)
    parser.add_argument("--expected-states", nargs="*", default=None, metavar="STATE",
                        help="states that declare a climb expected (default: the served "
                             "TFT_ALERT_TREND_EXPECTED_STATES; none given: every climb counts)")
    parser.add_argument("--quiet", action="append", default=[], metavar="NAME=SPEC",
                        help="a fleet without incidents (sim:N:DAYS:SEED:quiet), out of the means: its false "
                             "alerts bound the choice (--max-quiet-false)")
    parser.add_argument("--max-quiet-false", type=float, help="the most false alerts a day on each --quiet fleet")
    parser.add_argument("--out", type=Path)
    opts = parser.parse_args(argv)
    refuse_held_out(parser, opts.source + opts.quiet)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _django()
    from django.conf import settings

    from forecasting.engine.alert_rules import TREND_METRIC

    expected = tuple(settings.TFT_ALERT_TREND_EXPECTED_STATES if opts.expected_states is None else opts.expected_states)

    grid = list(itertools.product(opts.fits, opts.reaches, opts.holds, opts.nears))
    started = time.monotonic()
    per_source = {}
    for item in opts.source:
        name, _, spec = item.partition("=")
        per_source[name] = replay_source(spec, grid, opts.every, expected)
        logger.info("%s: %d rules in %.0f s", name, len(per_source[name]), time.monotonic() - started)
    quiet = {}
    for item in opts.quiet:
        name, _, spec = item.partition("=")
        quiet[name] = replay_source(spec, grid, opts.every, expected)
        logger.info("%s (quiet): %d rules in %.0f s", name, len(quiet[name]), time.monotonic() - started)
    rules = list(next(iter(per_source.values())))
    mean = {}
    for rule in rules:
        row = {}
        for key in KEYS:
            vals = np.array([s[rule][key] for s in per_source.values() if rule in s], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            row[key] = float(vals.mean()) if vals.size else None
        mean[rule] = row
    chosen = _best(mean, f"{TREND_METRIC}@", opts.max_false, quiet, opts.max_quiet_false)
    anchor = _best(mean, "predict_linear@", opts.max_false, quiet, opts.max_quiet_false)
    table = sorted(mean.items(), key=lambda kv: -(kv[1]["recall_15m"] or 0.0))
    refs = ("predict_linear", "predict_linear_k3m6", "static_threshold", anchor)
    for rule, row in [kv for kv in table if kv[0].startswith("trend@")][:15] + [(r, mean[r]) for r in refs if r]:
        print(f"{rule:24} recall {row['recall_15m']:.3f} false/day {row['false_alerts_per_server_day']:.3f} "
              f"alert-min/day {row['alert_minutes_per_server_day']:.0f}")
    print("chosen:", chosen, "; predict_linear's best at the bound:", anchor)
    for name, figures in {**per_source, **quiet}.items():
        print(name, {r: {k: round(figures[r][k], 3) for k in KEYS[:2]} for r in (chosen, anchor, "predict_linear") if r})
    if opts.out:
        opts.out.write_text(json.dumps({
            "what": "trend rule grid on development sources (mean over sources; families equal within each)",
            "command": "python -m bench.trend_choice " + " ".join(argv or sys.argv[1:]),
            "measured": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.monotonic() - started, 1),
            "every_minutes": opts.every * 5,
            "max_false": opts.max_false,
            "max_quiet_false": opts.max_quiet_false,
            "expected_states": list(expected),
            "chosen": chosen,
            "predict_linear_best": anchor,
            "mean_over_sources": mean,
            "per_source_columns": list(KEYS),
            "per_source": {name: {rule: [_rounded(row.get(k)) for k in KEYS] for rule, row in rows.items()}
                           for name, rows in per_source.items()},
            "quiet": {name: {rule: [_rounded(row.get(k)) for k in KEYS] for rule, row in rows.items()}
                      for name, rows in quiet.items()},
        }, separators=(",", ":"), default=lambda x: None))  # fmt: skip


if __name__ == "__main__":
    main()
