"""Would the forecast make the trend rule quieter? (issue 23, round 9; development sets only)

    python -m bench.trend_gate OUT.json BACKTEST-ARGS...

Runs ``manage.py backtest BACKTEST-ARGS`` (with the served trend rule) and also replays the server's
trend alert gated by the served forecast: a metric's trend counts only where the forecast the rules
read also climbs — its p90 peak over the horizon at or above the metric's warning limit
(``trend_gate_p90w``), or its p50 peak (``trend_gate_p50w``) — each served with the forecast rules and
incident_prob (``served_gate_p90w``, ``served_gate_p50w``). The idea: the trend's false alerts on
the simulated fleets come from daily ramps the forecast knows will turn. The replay machinery is
``engine.alert_replay``'s own; only these codes are added (a bench, not a served rule). Writes the
alert section's pooled figures for the gated and the served rules. Never point it at data/holdout*.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

GATES = {"trend_gate_p90w": 0.9, "trend_gate_p50w": 0.5}


def main(argv: list[str]) -> None:
    out_path, args = Path(argv[0]), argv[1:]
    if any("holdout" in a for a in args):
        raise SystemExit("held-out sets are never used for choices")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tftsite.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from forecasting.engine import alert_replay as ar

    read_of: dict = {}
    forecast_codes = ar.forecast_codes

    def recording_codes(q, cols, limits, levels, *, early_steps=None, p50_only=False):
        if not p50_only:
            read_of.setdefault("last", (q, cols, limits, levels))
        return forecast_codes(q, cols, limits, levels, early_steps=early_steps, p50_only=p50_only)

    series_case = ar._series_case

    def gated_case(w, *a, **kw):
        read_of.clear()
        case = series_case(w, *a, **kw)
        if case is None or ar.TREND_RULE not in case.codes:
            return case
        q, cols, (warning, _critical), levels = read_of["last"]
        for name, level in GATES.items():
            peak = q[..., cols, list(levels).index(level)].max(axis=1)  # (n, C)
            ok = peak >= warning[None, :]
            case.codes[name] = np.where(ok, case.codes[ar.TREND_RULE], 0).max(axis=1, keepdims=True)
        return case

    replay_series = ar.replay_series

    def replay_with_gates(values, states, origins, codes, critical, hysteresis, **kw):
        rules = dict(hysteresis)
        for name in GATES:
            rules.setdefault(name, rules.get(ar.TREND_SERVER, ar.IMMEDIATE))
        if kw.get("unions") and all(g in codes for g in GATES):
            kw["unions"] = {**kw["unions"], **{u: tuple(p for p in parts if p in codes) for u, parts in served.items()}}
        return replay_series(values, states, origins, codes, critical, rules, **kw)

    pooled = ar.pooled

    def pooled_all(per_family, *, rules=None):  # the module's default list was bound before the gates
        return pooled(per_family, rules=ar.REPLAY_RULES if rules is None else rules)

    ar.forecast_codes, ar._series_case, ar.replay_series = recording_codes, gated_case, replay_with_gates
    ar.pooled = pooled_all
    ar.SERIES_RULES = ar.SERIES_RULES | set(GATES)
    served = {f"served_gate_{name.rsplit('_', 1)[1]}": ("served_forecast", name, ar.PROB_RULE) for name in GATES}
    ar.REPLAY_RULES = (*ar.REPLAY_RULES, *GATES, *served)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"trend_gate_{os.getpid()}.json"
    with out.open("w") as fh:
        call_command("backtest", *args, "--json", stdout=fh)
    alerts = json.loads(out.read_text())["alerts"]
    keep = ("served", "served_without_trend", ar.TREND_SERVER, *GATES, *served, "predict_linear")
    out_path.write_text(json.dumps({"args": args, "pooled": {r: alerts["pooled"][r] for r in keep if r in alerts["pooled"]}},
                                   indent=1, default=lambda x: None))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
