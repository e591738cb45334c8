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
from urllib.parse import quote

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Max, Q
from django.utils.html import escape
from django.utils.safestring import mark_safe

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
ALERTS_PAGE_LIMIT = 200
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
    """An SVG polyline `points` string of an already downsampled series, scaled to the box.

    The scale includes the critical limit when given, so a line near the top means near trouble.
    """
    if not values:
        return ""
    low = min(0.0, min(values))
    high = max(max(values), ceiling or 0.0)
    scale = (height - 2) / ((high - low) or 1.0)
    dx = width / (len(values) - 1 or 1)
    base = height - 1 + low * scale
    return " ".join([f"{i * dx:.0f},{base - v * scale:.1f}" for i, v in enumerate(values)])


def _ratios(summary: dict) -> tuple[dict[str, float], str | None, float]:
    """Median peak ÷ critical per metric, and the metric that comes closest to (or furthest past)
    its critical limit."""
    ratios, worst, top = {}, None, -1.0
    for metric in METRICS:
        s = summary.get(metric)
        critical = s.get("critical") if s else None
        r = s["peak_p50"] / critical if critical else 0.0
        ratios[metric] = r
        if critical and r > top:
            worst, top = metric, r
    return ratios, worst, max(top, 0.0)


def _sampled(values: list, points: int = SPARK_POINTS) -> list:
    stride = max(1, len(values) // points)
    sampled = values[::stride]
    if (len(values) - 1) % stride:
        sampled.append(values[-1])  # always end on the horizon's last step
    return sampled


def _p50_sampled(payload: str, metric: str) -> list[float]:
    """One metric's p50, downsampled for a sparkline, without decoding the other 1,100 floats.

    The payload is our own compact json.dumps ({"metric":{"p10":[…],"p50":[…],…},…}), so the list
    after the metric's "p50" key is plain comma-separated numbers. Anything unexpected falls back
    to a full decode.
    """
    at = payload.find(f'"{metric}":{{')
    start = payload.find('"p50":[', at) if at >= 0 else -1
    if start >= 0:
        stop = payload.find("]", start)
        try:
            return [float(x) for x in _sampled(payload[start + 7 : stop].split(","))]
        except ValueError:
            pass
    return _sampled(json.loads(payload).get(metric, {}).get("p50", []))


def _f1(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def _pct(value) -> str:
    return "—" if value is None else f"{round(100 * value)}%"


def _utc(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    # The server's rendering of a time: the browser replaces it with its own timezone (dashboard.js).
    return value.strftime(fmt) if value else ""


def _heat_row(metric: str, rows: list[dict]) -> str:
    """One heatmap row as HTML. Built here rather than in the template: 200 servers × 4 metrics is
    800 cells, and the template engine spends about a millisecond per dozen of them."""
    label, unit = METRIC_LABELS[metric]
    cells = []
    for r in rows:
        c = r["cells"][metric]
        cells.append(
            f'<td class="h{c["level"]}" title="{r["name_html"]} · {label}: peak {c["peak"]} {unit} of critical '
            f'{c["critical"]} ({c["pct"]}%)"><a href="{r["href"]}" aria-label="{r["name_html"]} {label}"></a></td>'
        )
    # Safe: server names are escaped once per row (name_html); labels, units and numbers are ours.
    return mark_safe(f"<th>{label}</th>{''.join(cells)}")


def _table_row(r: dict) -> str:
    """One server row of the fleet table as HTML, for the same reason as _heat_row: 200 rows of a dozen
    template variables each cost ~100 ms on a busy CPU; this costs a few."""
    reason = f' title="{escape(r["fallback_reason"])}"' if r["fallback_reason"] else ""
    # Safe: every value from the database is escaped; the rest are our numbers and labels.
    return mark_safe(
        f'<tr data-server="{r["name_html"]}">'
        f'<td><a class="server-link" href="{r["href"]}">{r["name_html"]}</a></td>'
        f'<td>{escape(r["profile"])}</td><td><span class="pill">{escape(r["state"])}</span></td>'
        f'<td class="num">{r["cpu"]}%</td><td class="num">{r["mem"]}%</td>'
        f'<td>{r["peak_label"]} <strong>{r["peak_value"]}</strong> {r["peak_unit"]} '
        f'<span class="muted small">/ crit {r["peak_critical"]}</span></td>'
        f'<td><time datetime="{r["peak_at"]}" data-fmt="time">{r["peak_at_utc"]}</time> '
        f'<span class="muted small">(+{r["peak_minutes"]} min)</span></td>'
        f'<td class="num risk{r["risk_level"]}">{r["prob_8h_pct"]}</td>'
        f'<td><span class="pill {escape(r["method"])}"{reason}>{escape(r["method"])}</span></td>'
        f'<td><svg class="spark lvl{r["peak_level"]}" viewBox="0 0 120 24" width="120" height="24" '
        f'aria-label="{r["peak_label"]} p50 forecast"><polyline points="{r["spark"]}"/></svg></td></tr>'
    )


def _run_rows(run: PredictionRun, server_prefix: str) -> tuple[list[dict], list[str]]:
    """The fleet table's rows (riskiest first) and the heatmap's, derived from one run only.

    They change once per run (every TFT_PREDICTION_INTERVAL_SECONDS) while the page is fetched by
    every open browser at that pace, so each process computes them once per run and caches them.
    """
    key = f"dashboard:fleet-rows:{run.pk}:{run.finished_at.timestamp()}:{server_prefix}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    step = settings.TFT_STEP_MINUTES
    rows: list[dict] = []
    forecasts = (
        ServerForecast.objects.filter(run=run)
        .order_by()
        .values_list(
            "server__name", "server__profile", "method", "fallback_reason", "prob_8h", "state", "summary", "origin",
            "payload",
        )
    )
    for name, profile, method, reason, p8h, state, summary, origin, payload in forecasts:
        ratios, worst, ratio = _ratios(summary)
        cells = {}
        for metric in METRICS:
            s = summary.get(metric, {})
            r = ratios[metric]
            cells[metric] = {"level": heat_level(r), "pct": round(100 * r), "peak": _f1(s.get("peak_p50")),
                             "critical": _f1(s.get("critical"))}
        peak = summary.get(worst, {}) if worst else {}
        spark = _spark_points(_p50_sampled(payload, worst), ceiling=peak.get("critical")) if worst else ""
        peak_step = int(peak.get("peak_step", 0) or 0)
        peak_at = origin + timedelta(minutes=step * max(peak_step - 1, 0))
        label, unit = METRIC_LABELS.get(worst, ("", "")) if worst else ("", "")
        slug = quote(name, safe="")
        rows.append(
            {
                "name": name,
                "name_html": escape(name),
                "href": f"{server_prefix}{slug}/",
                "profile": PROFILE_LABELS.get(profile, profile),
                "state": state or "—",
                "cpu": _f1(summary.get("cpu_pct", {}).get("current")),
                "mem": _f1(summary.get("mem_pct", {}).get("current")),
                "peak_label": label,
                "peak_unit": unit,
                "peak_value": _f1(peak.get("peak_p50")),
                "peak_critical": _f1(peak.get("critical")),
                "peak_ratio": ratio,
                "peak_level": heat_level(ratio),
                "peak_at": peak_at.isoformat(),
                "peak_at_utc": peak_at.strftime("%H:%M UTC"),
                "peak_minutes": peak_step * step,
                "prob_8h": p8h,
                "prob_8h_pct": _pct(p8h),
                "risk_level": 3 if p8h >= 0.5 else 2 if p8h >= 0.2 else 1 if p8h >= 0.05 else 0,
                "method": method,
                "fallback_reason": reason,
                "spark": spark,
                "cells": cells,
            }
        )
    # Riskiest first: the 8-hour probability, then how close the worst peak gets to its limit.
    rows.sort(key=lambda r: (-r["prob_8h"], -r["peak_ratio"], r["name"]))
    for r in rows:
        r["html"] = _table_row(r)
    # Servers × metrics, the servers in the table's (risk) order.
    result = (rows, [_heat_row(metric, rows) for metric in METRICS] if rows else [])
    cache.set(key, result, timeout=max(600, 10 * settings.TFT_PREDICTION_INTERVAL_SECONDS))
    return result


def fleet_overview(*, server_prefix: str, now: datetime | None = None) -> dict:
    """Everything the fleet page shows, in 5 queries (run, model, readiness, forecasts, warmup),
    or 4 when this run's rows are cached.

    Numbers arrive formatted: Django's floatformat and widthratio cost ~100 µs each, which across
    a table of 200 servers would be most of the page's time.
    """
    now = now or _now()
    run = current_run()
    readiness = fleet_readiness()
    version = ModelVersion.objects.filter(is_active=True, valid=True).values_list("name", flat=True).first()
    rows, heatmap = _run_rows(run, server_prefix) if run is not None else ([], [])
    warming = []
    if readiness.tracked and readiness.ready < readiness.tracked:
        threshold = settings.TFT_WARMUP_RECORDS
        warming = [
            {"name": name, "href": f"{server_prefix}{quote(name, safe='')}/", "records": count,
             "percent": min(100, 100 * count // threshold)}
            for name, count in Server.objects.filter(record_count__lt=threshold)
            .order_by("record_count", "name")
            .values_list("name", "record_count")[:WARMUP_LIST_LIMIT]
        ]
    environment = run.environment if run else {}
    return {
        "run": run,
        "environment": environment,
        "fleet_health": environment.get("fleet_health"),
        "prob_30m": _pct(environment.get("prob_30m")),
        "prob_8h": _pct(environment.get("prob_8h")),
        "readiness": readiness,
        "warmup_threshold": settings.TFT_WARMUP_RECORDS,
        "warming": warming,
        "warming_more": max(0, readiness.tracked - readiness.ready - len(warming)),
        "model_version": (run.model_name if run and run.model_name else version),
        "fallback_rate": _pct(run.fallback_count / run.servers) if run and run.servers else None,
        "rows": rows,
        "heatmap": heatmap,
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


ALERT_FIELDS = ("pk", "severity", "state", "server__name", "metric", "message", "predicted_value", "threshold",
                "minutes_ahead", "opened_at", "updated_at", "acknowledged_at", "acknowledged_by__username")


def _alert_rows(query) -> list[dict]:
    """Alerts as display rows, formatted here for the same reason as the fleet table."""
    rows = []
    for a in query.values(*ALERT_FIELDS):
        rows.append(
            {
                "pk": a["pk"],
                "severity": a["severity"],
                "state": a["state"],
                "server": a["server__name"],
                "slug": quote(a["server__name"], safe=""),
                "metric": a["metric"],
                "message": a["message"],
                "predicted": _f1(a["predicted_value"]),
                "threshold": _f1(a["threshold"]),
                "minutes_ahead": a["minutes_ahead"],
                "opened_iso": a["opened_at"].isoformat(),
                "opened_utc": _utc(a["opened_at"]),
                "updated_iso": a["updated_at"].isoformat(),
                "updated_utc": _utc(a["updated_at"]),
                "ack_iso": a["acknowledged_at"].isoformat() if a["acknowledged_at"] else "",
                "ack_utc": _utc(a["acknowledged_at"]),
                "ack_by": a["acknowledged_by__username"] or "",
            }
        )
    return rows


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
    alerts = _alert_rows(Alert.objects.filter(server=server).order_by("-opened_at")[:50])
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
    alerts = _alert_rows(listed[: ALERTS_PAGE_LIMIT + 1])
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
