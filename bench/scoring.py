"""Section: the live-scoring pass (forecasting.scoring.services.forecasts_score) at 20 and 1,000 servers.

A steady-state pass: every 5 minutes each server has one forecast whose 0–30 min band just became
observed, one whose 30 min–2 h band did and one whose 2–8 h band did, so a pass scores 3 archived
forecasts a server (3,000 at 1,000 servers) against 24 h of seeded buckets. Each repetition seeds
those forecasts afresh (untimed) and times one pass; medians of the repetitions.
"""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np

from bench.common import summary

# (age of the origin, bands already scored): the forecasts one steady-state pass finds due.
DUE = ((timedelta(minutes=35), 0), (timedelta(hours=2, minutes=5), 1), (timedelta(hours=8, minutes=5), 2))


def _seed_archive(now) -> int:
    from forecasting.engine.scoring import pack_quantiles
    from forecasting.engine.spec import HORIZON, METRICS, STEP_MINUTES
    from forecasting.models import ArchivedForecast, ForecastScore
    from ingest.models import Server

    ForecastScore.objects.all().delete()
    ArchivedForecast.objects.all().delete()
    rng = np.random.default_rng(7)
    step = timedelta(minutes=STEP_MINUTES)
    base = now - timedelta(seconds=now.timestamp() % step.total_seconds())
    rows = []
    for server_id in Server.objects.values_list("id", flat=True):
        for age, scored in DUE:
            p50 = rng.uniform(10, 60, size=(HORIZON, len(METRICS), 1))
            quantiles = np.concatenate([p50 * 0.9, p50, p50 * 1.1], axis=-1).astype(np.float32)
            # Issue 24: a TFT forecast is archived with its raw quantiles too, and both are scored.
            raw = pack_quantiles(np.concatenate([p50 * 0.8, p50 * 1.05, p50 * 1.3], axis=-1)[None])[0]
            rows.append(ArchivedForecast(server_id=server_id, origin=base - age, method="tft", model_name="bench",
                                         quantiles=quantiles.tobytes(), raw_quantiles=raw,
                                         last_values=[30.0] * len(METRICS),
                                         scales=[1.5] * len(METRICS), bands_scored=scored, created_at=now))
    ArchivedForecast.objects.bulk_create(rows, batch_size=1000)
    return len(rows)


def run_scoring(args, log) -> dict:
    from datetime import UTC, datetime

    from bench.seed import seed_fleet
    from forecasting.scoring.services import forecasts_score

    out = {}
    for n in (20, 1000):
        now = datetime.now(UTC)
        seeded = seed_fleet(n, now=now)
        log(f"scoring: seeded {seeded['servers']} servers, {seeded['buckets']} buckets")
        seconds, scored = [], None
        for rep in range(args.reps):
            archived = _seed_archive(now)
            started = time.perf_counter()
            scored = forecasts_score(limit=10 * archived)
            seconds.append(time.perf_counter() - started)
            log(f"scoring {n} servers rep {rep + 1}: {scored.forecasts} forecasts, {scored.bands} bands, "
                f"{scored.rows} score rows in {seconds[-1]:.3f} s")
        out[str(n)] = {"servers": n, "forecasts_per_pass": scored.forecasts, "bands_per_pass": scored.bands,
                       "score_rows_per_pass": scored.rows, "pass_s": summary(seconds, digits=3),
                       "ms_per_forecast": round(1000 * float(np.median(seconds)) / max(scored.forecasts, 1), 3)}
    small, large = out["20"]["pass_s"]["median"], out["1000"]["pass_s"]["median"]
    out["ratio_1000_vs_20"] = round(large / small, 1) if small else None
    return out
