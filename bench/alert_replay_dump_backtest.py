"""Run `manage.py backtest ARGS` and also keep, per series, the incident probabilities the
incident_prob rule read at each origin and the served severity codes (npz: "server|origins",
"server|p", "server|served", "server|served_p50"), for bench/alert_replay_score_rules.py (issue 23,
bench/results/alert_replay/new_sources_r1.json). Usage:
    python bench/alert_replay_dump_backtest.py OUT.npz BACKTEST-ARGS...
"""

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
from django.core.management import call_command  # noqa: E402

from forecasting.engine import alert_replay  # noqa: E402

out_path = sys.argv[1]
kept = {}
_orig = alert_replay.event_probability


def recording(setup, window=alert_replay.PROB_WINDOW):
    inner = _orig(setup, window)

    def probability(w, cols, origins, q):
        out = inner(w, cols, origins, q)
        p = out[0] if isinstance(out, tuple) else out  # (p, base rate) since the lift
        kept[w.server] = (np.asarray(origins), np.asarray(p, dtype=np.float64))
        return out

    return probability


alert_replay.event_probability = recording
codes = {}
_orig_case = alert_replay._series_case


def recording_case(w, *args, **kwargs):
    case = _orig_case(w, *args, **kwargs)
    if case is not None:
        codes[w.server] = (case.origins, case.codes["served_forecast"], case.codes["served_p50"])
    return case


alert_replay._series_case = recording_case
call_command("backtest", *sys.argv[2:])
arrays = {f"{k}|origins": v[0] for k, v in codes.items()}
arrays.update({f"{k}|p": v[1] for k, v in kept.items()})
arrays.update({f"{k}|served": v[1] for k, v in codes.items()})
arrays.update({f"{k}|served_p50": v[2] for k, v in codes.items()})
np.savez_compressed(out_path, **arrays)
