"""Reads for the dashboard pages.

Every page is a fixed handful of queries whatever the fleet size: one query fetches all the
forecasts of the current run, one the alerts, one the readiness counts, and so on. Nothing here
runs per server in a loop against the database, and nothing imports pandas or torch: the web
process stays light and a page with 200 servers renders in tens of milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Q

from forecasting.alerts import DEFAULT_THRESHOLDS
from forecasting.models import Alert, AlertThreshold, ModelVersion, PredictionRun, ServerForecast
from forecasting.selectors import current_run
from ingest.contract import METRICS, PROFILE_LABELS, STATE_SEVERITY, STATES
from ingest.models import MetricBucket, Server
from ingest.selectors import fleet_readiness

HORIZON_STEPS = 96
HISTORY_HOURS = 24
SPARK_POINTS = 32
WARMUP_LIST_LIMIT = 60
ALERTS_PAGE_LIMIT = 300
METRIC_LABELS = {
    "cpu_pct": ("CPU", "%"),
    "mem_pct": ("Memory", "%"),
    "disk_io_mb_s": ("Disk I/O", "MB/s"),
    "latency_ms": ("Latency", "ms"),
}
# Heatmap bands of peak_p50 / critical: below half the limit is calm, at or above it is an incident.
HEAT_LEVELS = (0.5, 0.7, 0.85, 1.0)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Page:
    """Header facts every page shows: the current run and how many alerts are open."""

    run: PredictionRun | None
    active_alerts: int
    interval_seconds: int


def page_header() -> Page:
    return Page(
        run=current_run(),
        active_alerts=Alert.objects.filter(state=Alert.State.ACTIVE).count(),
        interval_seconds=settings.TFT_PREDICTION_INTERVAL_SECONDS,
    )


def heat_level(ratio: float) -> int:
    return sum(ratio >= edge for edge in HEAT_LEVELS)


def _spark_points(values: list[float], *, width: int = 120, height: int = 24, ceiling: float | None = None) -> str:
    """An SVG polyline `points` string: the series downsampled to SPARK_POINTS, scaled to the box.

    The scale includes the critical limit when given, so a line near the top means near trouble.
    """
    if not values:
        return ""
    stride = max(1, len(values) // SPARK_POINTS)
    sampled = values[::stride]
    if (len(values) - 1) % stride:
        sampled.append(values[-1])  # always end on the horizon's last step
    low = min(0.0, min(sampled))
    high = max(max(sampled), ceiling or 0.0)
    span = (high - low) or 1.0
    last = len(sampled) - 1 or 1
    return " ".join(
        f"{i * width / last:.1f},{height - 1 - (v - low) * (height - 2) / span:.1f}" for i, v in enumerate(sampled)
    )


def _worst_metric(summary: dict) -> tuple[str | None, float]:
    """The metric whose median peak comes closest to (or furthest past) its critical limit."""
    best, ratio = None, -1.0
    for metric in METRICS:
        s = summary.get(metric)
        if not s or not s.get("critical"):
            continue
        r = s["peak_p50"] / s["critical"]
        if r > ratio:
            best, ratio = metric, r
    return best, max(ratio, 0.0)


def fleet_overview(*, now: datetime | None = None) -> dict:
    """Everything the fleet page shows, in 5 queries (run, model, readiness, forecasts, warmup)."""
    now = now or _now()
    step = settings.TFT_STEP_MINUTES
    run = current_run()
    readiness = fleet_readiness()
    version = ModelVersion.objects.filter(is_active=True, valid=True).values_list("name", flat=True).first()
    rows: list[dict] = []
    if run is not None:
        forecasts = (
            ServerForecast.objects.filter(run=run)
            .order_by()
            .values_list(
                "server__name", "server__profile", "method", "fallback_reason", "prob_30m", "prob_8h", "state",
                "summary", "origin", "payload",
            )
        )
        for name, profile, method, reason, p30, p8h, state, summary, origin, payload in forecasts:
            worst, ratio = _worst_metric(summary)
            peak = summary.get(worst, {}) if worst else {}
            cells = []
            for metric in METRICS:
                s = summary.get(metric, {})
                r = (s.get("peak_p50", 0.0) / s["critical"]) if s.get("critical") else 0.0
                cells.append({"metric": metric, "ratio": r, "level": heat_level(r), "peak": s.get("peak_p50"),
                              "critical": s.get("critical")})
            spark = ""
            if worst:
                # Only the sparkline's metric is needed, but the payload is one JSON text per server.
                series = json.loads(payload).get(worst, {}).get("p50", [])
                spark = _spark_points(series, ceiling=peak.get("critical"))
            peak_step = int(peak.get("peak_step", 0) or 0)
            rows.append(
                {
                    "name": name,
                    "profile": PROFILE_LABELS.get(profile, profile),
                    "state": state or "—",
                    "cpu": summary.get("cpu_pct", {}).get("current"),
                    "mem": summary.get("mem_pct", {}).get("current"),
                    "peak_metric": worst,
                    "peak_label": METRIC_LABELS.get(worst, (worst, ""))[0] if worst else "",
                    "peak_unit": METRIC_LABELS.get(worst, ("", ""))[1] if worst else "",
                    "peak_value": peak.get("peak_p50"),
                    "peak_critical": peak.get("critical"),
                    "peak_ratio": ratio,
                    "peak_level": heat_level(ratio),
                    "peak_at": origin + timedelta(minutes=step * max(peak_step - 1, 0)),
                    "peak_minutes": peak_step * step,
                    "prob_30m": p30,
                    "prob_8h": p8h,
                    "risk_level": 3 if p8h >= 0.5 else 2 if p8h >= 0.2 else 1 if p8h >= 0.05 else 0,
                    "method": method,
                    "fallback_reason": reason,
                    "spark": spark,
                    "cells": cells,
                }
            )
        # Riskiest first: the 8-hour probability, then how close the worst peak gets to its limit.
        rows.sort(key=lambda r: (-r["prob_8h"], -r["peak_ratio"], r["name"]))
    # Servers × metrics, the servers in the table's (risk) order.
    heatmap = [
        {"metric": metric, "label": METRIC_LABELS[metric][0], "unit": METRIC_LABELS[metric][1],
         "cells": [{"name": r["name"], **r["cells"][i]} for r in rows]}
        for i, metric in enumerate(METRICS)
    ]
    warming = []
    if readiness.tracked and readiness.ready < readiness.tracked:
        threshold = settings.TFT_WARMUP_RECORDS
        warming = [
            {"name": name, "records": count, "percent": min(100, 100 * count // threshold)}
            for name, count in Server.objects.filter(record_count__lt=threshold)
            .order_by("record_count", "name")
            .values_list("name", "record_count")[:WARMUP_LIST_LIMIT]
        ]
    environment = run.environment if run else {}
    return {
        "run": run,
        "environment": environment,
        "fleet_health": environment.get("fleet_health"),
        "readiness": readiness,
        "warmup_threshold": settings.TFT_WARMUP_RECORDS,
        "warming": warming,
        "warming_more": max(0, readiness.tracked - readiness.ready - len(warming)),
        "model_version": (run.model_name if run and run.model_name else version),
        "fallback_rate": (run.fallback_count / run.servers) if run and run.servers else None,
        "rows": rows,
        "heatmap": heatmap if rows else [],
        "stale": bool(run and (now - run.finished_at).total_seconds() > 3 * settings.TFT_PREDICTION_INTERVAL_SECONDS),
    }


def _thresholds() -> dict[str, dict]:
    rules = {metric: dict(rule) for metric, rule in DEFAULT_THRESHOLDS.items()}
    for row in AlertThreshold.objects.values("metric", "warning", "critical", "relative", "floor"):
        rules[row["metric"]] = row
    return rules


def _dominant(counts: tuple[int, ...]) -> str:
    # As ingest.models.dominant_state: most frequent, ties to the more severe state.
    return max(zip(STATES, counts, strict=True), key=lambda sc: (sc[1], STATE_SEVERITY[sc[0]]))[0]


def _state_segments(times: list[int], states: list[str], step_seconds: int) -> list[dict]:
    """Consecutive buckets in the same state merged into one segment (a few dozen, not 288 divs)."""
    if not times:
        return []
    start, end = times[0], times[-1] + step_seconds
    span = (end - start) or 1
    segments: list[dict] = []
    for t, state in zip(times, states, strict=True):
        if segments and segments[-1]["state"] == state and segments[-1]["end"] == t:
            segments[-1]["end"] = t + step_seconds
        else:
            segments.append({"state": state, "start": t, "end": t + step_seconds})
    for seg in segments:
        seg["left"] = round(100 * (seg["start"] - start) / span, 3)
        seg["width"] = round(100 * (seg["end"] - seg["start"]) / span, 3)
        seg["start_iso"] = datetime.fromtimestamp(seg["start"], tz=UTC).isoformat()
        seg["end_iso"] = datetime.fromtimestamp(seg["end"], tz=UTC).isoformat()
    return segments


def server_detail(*, name: str) -> dict | None:
    """The server page: 24 h of history, the current forecast, state timeline and alerts (5 queries)."""
    server = Server.objects.filter(name=name).first()
    if server is None:
        return None
    step = settings.TFT_STEP_MINUTES
    step_seconds = step * 60
    since = server.last_seen - timedelta(hours=HISTORY_HOURS)
    buckets = (
        MetricBucket.objects.filter(server=server, bucket_start__gt=since, count__gt=0)
        .order_by("bucket_start")
        .values_list("bucket_start", "count", *(f"{m}_sum" for m in METRICS), *(f"n_{s}" for s in STATES))
    )
    times: list[int] = []
    history: dict[str, list[float]] = {m: [] for m in METRICS}
    states: list[str] = []
    n_metrics = len(METRICS)
    for row in buckets:
        times.append(int(row[0].timestamp()))
        count = row[1]
        for i, metric in enumerate(METRICS):
            history[metric].append(round(row[2 + i] / count, 3))
        states.append(_dominant(row[2 + n_metrics :]))

    run = current_run()
    forecast = None
    if run is not None:
        forecast = (
            ServerForecast.objects.filter(run=run, server=server)
            .values("method", "fallback_reason", "prob_30m", "prob_8h", "state", "summary", "origin", "payload",
                    "encoder_steps")
            .first()
        )
    rules = _thresholds() if forecast is None else None
    charts = []
    payload = json.loads(forecast["payload"]) if forecast else {}
    origin_ts = int(forecast["origin"].timestamp()) if forecast else None
    for metric in METRICS:
        label, unit = METRIC_LABELS[metric]
        summary = forecast["summary"].get(metric, {}) if forecast else {}
        if forecast:
            warning, critical = summary.get("warning"), summary.get("critical")
        else:
            # No forecast yet: absolute limits are known, relative ones need the model's context.
            rule = rules[metric]
            warning, critical = (None, None) if rule["relative"] else (rule["warning"], rule["critical"])
        fc = payload.get(metric)
        charts.append(
            {
                "metric": metric,
                "label": label,
                "unit": unit,
                "summary": summary,
                "json_id": f"data-{metric}",
                "data": {
                    "metric": metric,
                    "label": label,
                    "unit": unit,
                    "history_t": times,
                    "history": history[metric],
                    "forecast_t0": origin_ts,
                    "step_seconds": step_seconds,
                    "p10": fc["p10"] if fc else [],
                    "p50": fc["p50"] if fc else [],
                    "p90": fc["p90"] if fc else [],
                    "warning": warning,
                    "critical": critical,
                },
            }
        )
    alerts = list(
        Alert.objects.filter(server=server).select_related("acknowledged_by").order_by("-opened_at")[:50]
    )
    return {
        "server": server,
        "profile": PROFILE_LABELS.get(server.profile, server.profile),
        "ready": server.record_count >= settings.TFT_WARMUP_RECORDS,
        "warmup_threshold": settings.TFT_WARMUP_RECORDS,
        "warmup_percent": min(100, 100 * server.record_count // settings.TFT_WARMUP_RECORDS),
        "run": run,
        "forecast": forecast,
        "charts": charts,
        "timeline": _state_segments(times, states, step_seconds),
        "timeline_states": sorted(set(states), key=STATE_SEVERITY.__getitem__),
        "alerts": alerts,
        "horizon_hours": HORIZON_STEPS * step // 60,
    }


ALERT_STATES = tuple(s.value for s in Alert.State)
ALERT_SEVERITIES = tuple(s.value for s in Alert.Severity)


def alerts_board(*, state: str = "", severity: str = "", metric: str = "", server: str = "") -> dict:
    """The alerts page: per-state counts and the newest alerts matching the filters (2 queries)."""
    query = Q()
    if severity in ALERT_SEVERITIES:
        query &= Q(severity=severity)
    if metric in METRICS:
        query &= Q(metric=metric)
    if server:
        query &= Q(server__name__icontains=server)
    counts = Alert.objects.filter(query).aggregate(
        **{s: Count("id", filter=Q(state=s)) for s in ALERT_STATES}
    )
    listed = Alert.objects.filter(query)
    if state in ALERT_STATES:
        listed = listed.filter(state=state)
    # Open alerts sort by urgency (critical first, soonest first); resolved ones by recency.
    if state in ("active", "acknowledged"):
        listed = listed.order_by("-severity", "minutes_ahead", "-opened_at")
    else:
        listed = listed.order_by("-updated_at")
    alerts = list(listed.select_related("server", "acknowledged_by")[: ALERTS_PAGE_LIMIT + 1])
    return {
        "alerts": alerts[:ALERTS_PAGE_LIMIT],
        "truncated": len(alerts) > ALERTS_PAGE_LIMIT,
        "counts": counts,
        "total": sum(counts.values()),
        "filters": {"state": state if state in ALERT_STATES else "", "severity": severity, "metric": metric,
                    "server": server},
        "states": ALERT_STATES,
        "severities": ALERT_SEVERITIES,
        "metrics": METRICS,
        "limit": ALERTS_PAGE_LIMIT,
    }


def poll_signature() -> dict:
    """What the pages poll: when any of it changes, the page fetches itself again (3 queries)."""
    run = PredictionRun.objects.filter(status=PredictionRun.Status.COMPLETE).order_by("-finished_at").values(
        "pk", "finished_at"
    ).first()
    alerts = Alert.objects.aggregate(n=Count("id"), changed=Max("updated_at"))
    readiness = fleet_readiness()
    return {
        "run_id": run["pk"] if run else None,
        "run_finished_at": run["finished_at"].isoformat() if run else None,
        "alerts": alerts["n"],
        "alerts_changed_at": alerts["changed"].isoformat() if alerts["changed"] else None,
        "servers_tracked": readiness.tracked,
        "servers_ready": readiness.ready,
        "warmup_progress_percent": readiness.progress_percent,
        "interval_seconds": settings.TFT_PREDICTION_INTERVAL_SECONDS,
    }
