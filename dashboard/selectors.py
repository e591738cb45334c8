"""Reads for the dashboard pages.

Selectors return data (frozen dataclasses inside a page's context dict) and the templates render
every byte of HTML. Every page is a fixed handful of queries whatever the fleet size: one query
fetches all the forecasts of the current run, one the alerts, one the readiness counts, and so on.
Nothing here runs per server in a loop against the database, and nothing imports pandas or torch:
the web process stays light.

Thresholds, the active model, the current run and the dominant-state rule are read from their one
owner (forecasting selectors, forecasting.engine); nothing here re-implements them.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from urllib.parse import quote

from django.conf import settings
from django.db.models import Count, F, Max, Q

from forecasting.alerts.selectors import alert_thresholds, alerts_open_counts
from forecasting.engine.alert_rules import INCIDENT_METRIC, TREND_METRIC
from forecasting.engine.series import dominant_state
from forecasting.engine.serving import peak_ratios
from forecasting.engine.spec import HORIZON, STEP_MINUTES
from forecasting.models import Alert, AlertTransition, PredictionRun, ServerForecast
from forecasting.registry import active_model_version
from forecasting.runs.selectors import (
    current_run,
    origin_is_stale,
    run_is_stale,
    served_forecasts,
    stale_before,
    stored_explanation,
)
from forecasting.scoring.selectors import (
    fleet_band_accuracy,
    probability_reliability,
    server_accuracy,
    server_incident_history,
    server_incident_rule,
)
from forecasting.windows import maintenance_windows_current, silenced_server_names, window_server_names
from ingest.contract import METRICS, PROFILE_LABELS, STATE_SEVERITY, STATES
from ingest.fold import records_fold
from ingest.models import MetricBucket, Server
from ingest.selectors import fleet_readiness, silent_since

HISTORY_HOURS = 24
SPARK_POINTS = 32
WARMUP_LIST_LIMIT = 60
ALERTS_PAGE_LIMIT = 200
FLEET_PAGE_ROWS = 200  # rows of the fleet table (and heatmap columns) per page
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


def stale_after_minutes() -> int:
    return settings.TFT_STALE_AFTER_MINUTES


def is_stale(origin: datetime, *, now: datetime) -> bool:
    """A forecast is stale on the page when it starts more than TFT_STALE_AFTER_MINUTES before the
    moment the page is viewed: its first steps are history already.

    The API's forecasting.runs.selectors.forecast_is_stale judges at the run's start (the data was old
    when forecast), so a response stays the same for the whole run. A page is read later, so it
    judges at view time: every forecast the API calls stale is stale here too (now ≥ the run's start),
    and so is a forecast left standing by a worker that stopped."""
    return origin_is_stale(origin, at=now)


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


def _f1(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def _pct(value) -> str:
    return "—" if value is None else f"{round(100 * value)}%"


def _expected(value) -> str:
    """An expected number of servers as an operator reads it: "0.4", "2.3", "12"."""
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 10 else f"{round(value)}"


def accuracy_line(scores: dict, *, window: str = "24 h") -> str:
    """Live accuracy as an operator reads it: "last 24 h: MASE 0.82, 0.80 × naive, 79% inside the
    80% band (1,152 targets)", or why there is none yet."""
    if not scores.get("n"):
        return f"last {window}: no forecast scored yet (a band is scored once its targets are observed)"
    parts = []
    if scores.get("mase") is not None:
        parts.append(f"MASE {scores['mase']:.2f}")
    if scores.get("mase_vs_naive") is not None:
        parts.append(f"{scores['mase_vs_naive']:.2f} × naive")
    parts.append(f"{_pct(scores.get('coverage_80'))} inside the 80% band")
    return f"last {window}: {', '.join(parts)} ({scores['n']:,} targets)"


BAND_LABELS = {"0-30m": "0–30 min", "30m-2h": "30 min–2 h", "2-8h": "2–8 h"}


def band_accuracy_line(bands: dict) -> str:
    """Per horizon band, as an operator reads it: "0–30 min: 1.11 × naive (raw TFT 1.30 × naive), 69%
    inside · 30 min–2 h: not scored yet · …": the served forecast's ratio to the last value and, where
    TFT forecasts were scored, the raw TFT's (before the blend and the calibration) beside it."""
    parts = []
    for band, scores in bands.items():
        label = BAND_LABELS.get(band, band)
        if not scores.get("n"):
            parts.append(f"{label}: not scored yet")
            continue
        raw = scores.get("raw") or {}
        beside = f" (raw TFT {raw['mase_vs_naive']:.2f} × naive)" if raw.get("n") and raw.get("mase_vs_naive") is not None else ""
        ratio = f"{scores['mase_vs_naive']:.2f} × naive{beside}, " if scores.get("mase_vs_naive") is not None else ""
        parts.append(f"{label}: {ratio}{_pct(scores.get('coverage_80'))} inside")
    return " · ".join(parts)


def blend_line(blend: dict | None) -> str:
    """The blend a forecast was served with (the payload's {"model": [bands], "last_value": [bands]}),
    as an operator reads it: "0–30 min: 62% TFT, 38% last value · …"; '' for a forecast stored
    without one."""
    if not blend or len(blend.get("model", ())) != len(BAND_LABELS):
        return ""
    return " · ".join(f"{label}: {_pct(w)} TFT, {_pct(1.0 - w)} last value"
                      for label, w in zip(BAND_LABELS.values(), blend["model"], strict=True))


def _utc(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    # The server's rendering of a time: the browser replaces it with its own timezone (dashboard.js).
    return value.strftime(fmt) if value else ""


# --- Fleet -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeatCell:
    """One server × metric cell of the heatmap: median peak as a share of the critical limit.

    Its tooltip and label are plain text (the template escapes them), composed here because 800
    cells × six template lookups each would cost more than the rest of the page."""

    href: str
    level: int
    title: str
    label: str


@dataclass(frozen=True, slots=True)
class HeatRow:
    label: str
    cells: tuple[HeatCell, ...]


class RankedRow(NamedTuple):
    """A server's place in the fleet table: what orders, counts and searches the rows of a whole fleet
    (a tuple: 10,000 of them are built on a process's first view); a shown row is a FleetRow."""

    name: str
    prob_8h: float
    peak_ratio: float
    origin: datetime
    forecast_id: int
    stale: bool = False


@dataclass(frozen=True, slots=True)
class FleetRow:
    """One server's line of the fleet table, numbers already formatted: Django's floatformat costs
    ~100 µs a call, which across 200 rows would be most of the page's time.

    The rows a page shows: a RankedRow completed from its forecast's summary and payload
    (``_with_details``)."""

    name: str
    prob_8h: float
    peak_ratio: float
    origin: datetime
    forecast_id: int = 0  # the ServerForecast the row shows
    stale: bool = False
    href: str = ""
    profile: str = ""
    state: str = ""
    cpu: str = ""
    mem: str = ""
    peak_label: str = ""
    peak_unit: str = ""
    peak_value: str = ""
    peak_critical: str = ""
    peak_level: int = 0
    peak_at_iso: str = ""
    peak_at_utc: str = ""
    peak_minutes: int = 0
    prob_8h_pct: str = ""
    risk_level: int = 0
    method: str = ""
    fallback_reason: str = ""
    spark: str = ""
    origin_iso: str = ""
    origin_utc: str = ""
    cells: tuple[HeatCell, ...] = ()  # () until the row is shown (_with_details)


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


def _risk_level(p8h: float) -> int:
    return 3 if p8h >= 0.5 else 2 if p8h >= 0.2 else 1 if p8h >= 0.05 else 0


def _heat_cell(server: str, href: str, metric: str, summary: dict, ratio: float) -> HeatCell:
    label, unit = METRIC_LABELS[metric]
    return HeatCell(
        href=href,
        level=heat_level(ratio),
        title=f"{server} · {label}: peak {_f1(summary.get('peak_p50'))} {unit} of critical "
        f"{_f1(summary.get('critical'))} ({round(100 * ratio)}%)",
        label=f"{server} {label}",
    )


def _shown_row(row: RankedRow, details: tuple, *, server_prefix: str, step: int) -> FleetRow:
    """A ranked row with everything a page shows: details = (profile, method, fallback reason, state,
    summary, payload) of its forecast; the heatmap cells and the sparkline (the worst metric's p50)."""
    profile, method, reason, state, summary, payload = details
    summary = summary or {}
    name, origin = row.name, row.origin
    href = f"{server_prefix}{quote(name, safe='')}/"
    ratios, worst, ratio = peak_ratios(summary)
    peak = summary.get(worst, {}) if worst else {}
    peak_step = int(peak.get("peak_step", 0) or 0)
    peak_at = origin + timedelta(minutes=step * max(peak_step - 1, 0))
    label, unit = METRIC_LABELS.get(worst, ("", "")) if worst else ("", "")
    critical = peak.get("critical") if worst else None
    return FleetRow(
        name=name,
        prob_8h=row.prob_8h,
        peak_ratio=row.peak_ratio,
        origin=origin,
        forecast_id=row.forecast_id,
        href=href,
        profile=PROFILE_LABELS.get(profile, profile),
        state=state or "—",
        cpu=_f1(summary.get("cpu_pct", {}).get("current")),
        mem=_f1(summary.get("mem_pct", {}).get("current")),
        peak_label=label,
        peak_unit=unit,
        peak_value=_f1(peak.get("peak_p50")),
        peak_critical=_f1(critical),
        peak_level=heat_level(ratio),
        peak_at_iso=peak_at.isoformat(),
        peak_at_utc=peak_at.strftime("%H:%M UTC"),
        peak_minutes=peak_step * step,
        prob_8h_pct=_pct(row.prob_8h),
        risk_level=_risk_level(row.prob_8h),
        method=method,
        fallback_reason=reason,
        origin_iso=origin.isoformat(),
        origin_utc=_utc(origin, "%m-%d %H:%M UTC"),
        cells=tuple(_heat_cell(name, href, metric, summary.get(metric, {}), ratios[metric]) for metric in METRICS),
        spark=_spark_points(_p50_sampled(payload, worst), ceiling=critical) if worst and payload else "",
    )


def _rows_cache_seconds() -> int:
    # Long enough to outlive a run, short enough that a stopped worker's rows expire.
    return max(600, 10 * settings.TFT_PREDICTION_INTERVAL_SECONDS)


# The shown rows of this process by (server prefix, forecast id): a forecast's row never changes, and a
# run forecasts only the servers due (a fifth of the fleet under the stagger), so a page's rows mostly
# carry over from one run to the next. Least recently shown first out, past DETAILS_KEPT rows.
_details_memo: OrderedDict[tuple[str, int], FleetRow] = OrderedDict()
DETAILS_KEPT = 10 * FLEET_PAGE_ROWS


def _ranked_page(*, page: int, query: str, now: datetime) -> dict:
    """One page of the fleet table (FLEET_PAGE_ROWS rows, riskiest first: the 8-hour probability, then
    how close the worst peak gets to its limit, then the name), after a case-insensitive name search,
    and the counts the page shows: two queries, the order and the counts done by the database over
    the current forecasts' columns. A process's first view at 10,000 servers used to read every row
    and sort them here (0.35–0.58 s); a page is now the same top-N read on any process and any run."""
    needle = query.strip()
    current = served_forecasts()
    stale_cut = stale_before(now)
    counts = current.aggregate(total=Count("pk"), stale=Count("pk", filter=Q(origin__lt=stale_cut)),
                               matched=Count("pk", filter=Q(server__name__icontains=needle)))  # fmt: skip
    pages = max(1, -(-counts["matched"] // FLEET_PAGE_ROWS))
    page = min(max(page, 1), pages)
    listed = current.filter(server__name__icontains=needle) if needle else current
    ordered = listed.order_by("-prob_8h", F("peak_ratio").desc(nulls_last=True), "server__name")
    first = (page - 1) * FLEET_PAGE_ROWS
    rows = [RankedRow(name, p8h, ratio or 0.0, origin, forecast_id, stale=is_stale(origin, now=now))
            for forecast_id, name, p8h, ratio, origin in ordered.values_list(
                "id", "server__name", "prob_8h", "peak_ratio", "origin")[first : first + FLEET_PAGE_ROWS]]  # fmt: skip
    return {"rows": rows, "matched": counts["matched"], "page_no": page, "pages": pages, "query": needle,
            "first_rank": first + 1, "last_rank": first + len(rows), "total_rows": counts["total"],
            "stale_rows": counts["stale"]}  # fmt: skip


def _with_details(rows: list[RankedRow], *, server_prefix: str) -> list[FleetRow]:
    """The rows a page shows, complete (_shown_row): one query for the forecasts not yet shown by this
    process (none once a page has been shown: every browser polls it)."""
    step = settings.TFT_STEP_MINUTES
    missing = [r.forecast_id for r in rows if (server_prefix, r.forecast_id) not in _details_memo]
    if missing:
        details = {f[0]: f[1:] for f in ServerForecast.objects.filter(id__in=missing).values_list(
            "id", "server__profile", "method", "fallback_reason", "state", "summary", "payload")}  # fmt: skip
        for row in rows:
            if (server_prefix, row.forecast_id) not in _details_memo and row.forecast_id in details:
                _details_memo[(server_prefix, row.forecast_id)] = _shown_row(
                    row, details[row.forecast_id], server_prefix=server_prefix, step=step)  # fmt: skip
    out = []
    for row in rows:
        key = (server_prefix, row.forecast_id)
        shown = _details_memo.get(key)
        if shown is None:  # its forecast was pruned between the two reads: no details until the next view
            shown = _shown_row(row, _NO_DETAILS, server_prefix=server_prefix, step=step)
        else:
            _details_memo.move_to_end(key)
        out.append(replace(shown, stale=row.stale))
    while len(_details_memo) > DETAILS_KEPT:
        _details_memo.popitem(last=False)
    return out


_NO_DETAILS = ("", "", "", "", {}, None)  # profile, method, fallback reason, state, summary, payload


def _heatmap(rows: list[FleetRow]) -> list[HeatRow]:
    """Servers × metrics, the servers in the table's (risk) order."""
    if not rows:
        return []
    return [HeatRow(label=METRIC_LABELS[m][0], cells=tuple(r.cells[i] for r in rows)) for i, m in enumerate(METRICS)]


def _warming(readiness, *, server_prefix: str, now: datetime) -> list[dict]:
    if not readiness.tracked or readiness.ready >= readiness.tracked:
        return []
    threshold = settings.TFT_WARMUP_RECORDS
    servers = (
        Server.objects.filter(record_count__lt=threshold, last_received_at__gte=silent_since(now=now))
        .order_by("record_count", "name")
        .values_list("name", "record_count")[:WARMUP_LIST_LIMIT]
    )
    return [
        {"name": name, "href": f"{server_prefix}{quote(name, safe='')}/", "records": count,
         "percent": min(100, 100 * count // threshold)}
        for name, count in servers
    ]


def _silent(readiness, *, server_prefix: str, now: datetime) -> list[dict]:
    """Servers counted out of warmup because nothing arrived from them for a while, longest silent first."""
    if not readiness.silent:
        return []
    servers = (
        Server.objects.filter(last_received_at__lt=silent_since(now=now))
        .order_by("last_received_at", "name")
        .values_list("name", "record_count", "last_received_at")[:WARMUP_LIST_LIMIT]
    )
    return [
        {"name": name, "href": f"{server_prefix}{quote(name, safe='')}/", "records": count, "last_received_at": at}
        for name, count, at in servers
    ]


def _model_name(run: PredictionRun | None) -> str | None:
    if run is not None and run.model_name:
        return run.model_name
    version = active_model_version()
    return version.name if version else None


_HEALTH_ORDER = ("healthy", "warning", "critical")


def _health_now(health: str | None, open_alerts: dict[str, int]) -> str | None:
    """The run's fleet health, raised to the most severe open alert's level (alerts opened or
    resolved since the run): the tile never reads "healthy" beside open critical alerts."""
    if health is None:
        return None
    floor = "critical" if open_alerts.get("critical") else ("warning" if open_alerts.get("warning") else "healthy")
    return max(health, floor, key=_HEALTH_ORDER.index)


def _pct_label(p: float) -> str:
    """A probability as an operator reads it: "0.4 %", "18 %"."""
    value = 100 * p
    return f"{value:.1f} %" if value < 9.95 else f"{round(value)} %"


_WINDOW_LABELS = {"30m": "30 minutes", "8h": "8 hours"}


def probability_chart(*, now: datetime | None = None) -> list[dict]:
    """Per window, the served probabilities' reliability as an SVG-ready diagram (0–100 coordinates:
    x the mean probability we gave, y how often an incident followed) and its sentences."""
    panels = []
    for window, w in probability_reliability(now=now)["windows"].items():
        points = [
            {"cx": round(100 * r["mean_prob"], 2), "cy": round(100 - 100 * r["frequency"], 2),
             "r": round(min(6.0, 2.0 + math.log10(r["n"])), 2), "n": r["n"], "bin": r["bin"],
             "gave": _pct_label(r["mean_prob"]), "had": _pct_label(r["frequency"])}
            for r in w["reliability"]
        ]  # fmt: skip
        panels.append({
            "window": window, "label": _WINDOW_LABELS.get(window, window), "n": w["n"], "events": w["events"],
            "pending": w["pending"], "points": points,
            "polyline": " ".join(f"{p['cx']},{p['cy']}" for p in points),
            "base_rate": _pct_label(w["base_rate"]) if w["base_rate"] is not None else "—",
            "skill": "—" if w["skill"] is None else f"{w['skill']:+.2f}",
            "auc": "—" if w["auc"] is None else f"{w['auc']:.2f}",
        })  # fmt: skip
    return panels


def fleet_overview(*, server_prefix: str, now: datetime | None = None, page: int = 1, query: str = "") -> dict:
    """Everything the fleet page shows; the table and heatmap show one page of rows, ordered, counted
    and searched by the database (`_ranked_page`), completed from this process's memo of shown rows
    or one query (`_with_details`)."""
    now = now or _now()
    run = current_run()
    readiness = fleet_readiness(now=now)
    table = _ranked_page(page=page, query=query, now=now)
    table["rows"] = _with_details(table["rows"], server_prefix=server_prefix)
    warming = _warming(readiness, server_prefix=server_prefix, now=now)
    silent = _silent(readiness, server_prefix=server_prefix, now=now)
    environment = run.environment if run else {}
    fleet_scores = fleet_band_accuracy(window="24h", now=now)
    return {
        "run": run,
        "environment": environment,
        "fleet_health": _health_now(environment.get("fleet_health"), alerts_open_counts()),
        # The fleet's P(at least one incident) saturates at 100 % on any large fleet, healthy or not;
        # the expected number of servers crossing a critical limit (issue 13) is what the tiles lead with.
        "prob_30m": _pct(environment.get("prob_30m")),
        "prob_8h": _pct(environment.get("prob_8h")),
        "expected_30m": _expected(environment.get("expected_incidents_30m")),
        "expected_8h": _expected(environment.get("expected_incidents_8h")),
        "readiness": readiness,
        "warmup_threshold": settings.TFT_WARMUP_RECORDS,
        "warming": warming,
        "warming_more": max(0, readiness.tracked - readiness.ready - len(warming)),
        "silent": silent,
        "silent_more": max(0, readiness.silent - len(silent)),
        "silent_after_minutes": settings.TFT_SERVER_SILENT_AFTER_MINUTES,
        "model_version": _model_name(run),
        "fallback_rate": _pct(run.fallback_count / run.servers) if run and run.servers else None,
        **table,
        "heatmap": _heatmap(table["rows"]),
        "silenced": silenced_server_names(now=now),
        "rows_cache_seconds": _rows_cache_seconds(),
        "stale_after_minutes": stale_after_minutes(),
        "accuracy": accuracy_line(fleet_scores),
        "accuracy_bands": band_accuracy_line(fleet_scores["bands"]) if fleet_scores.get("n") else "",
        "stale": bool(run and run_is_stale(run, now=now)),
        "probability_panels": probability_chart(now=now),
    }


# --- Alerts ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert as a display row, formatted here for the same reason as the fleet table."""

    pk: int
    severity: str
    state: str
    server: str
    slug: str
    metric: str
    message: str
    predicted: str
    threshold: str
    minutes_ahead: int
    opened_iso: str
    opened_utc: str
    updated_iso: str
    updated_utc: str
    ack_iso: str
    ack_utc: str
    ack_by: str


ALERT_FIELDS = ("pk", "severity", "state", "server__name", "metric", "message", "predicted_value", "threshold",
                "minutes_ahead", "opened_at", "updated_at", "acknowledged_at", "acknowledged_by__username")


def _alert_rows(query) -> list[AlertRow]:
    return [
        AlertRow(
            pk=a["pk"],
            severity=a["severity"],
            state=a["state"],
            server=a["server__name"],
            slug=quote(a["server__name"], safe=""),
            metric=a["metric"],
            message=a["message"],
            predicted=_f1(a["predicted_value"]),
            threshold=_f1(a["threshold"]),
            minutes_ahead=a["minutes_ahead"],
            opened_iso=a["opened_at"].isoformat(),
            opened_utc=_utc(a["opened_at"]),
            updated_iso=a["updated_at"].isoformat(),
            updated_utc=_utc(a["updated_at"]),
            ack_iso=a["acknowledged_at"].isoformat() if a["acknowledged_at"] else "",
            ack_utc=_utc(a["acknowledged_at"]),
            ack_by=a["acknowledged_by__username"] or "",
        )
        for a in query.values(*ALERT_FIELDS)
    ]


ALERT_STATES = tuple(s.value for s in Alert.State)
ALERT_SEVERITIES = tuple(s.value for s in Alert.Severity)
ALERT_METRICS = (*METRICS, TREND_METRIC, INCIDENT_METRIC)  # a server's trend and incident_prob alerts: "trend", "incident"


def alerts_board(*, state: str = "", severity: str = "", metric: str = "", server: str = "") -> dict:
    """The alerts page: per-state counts and the newest alerts matching the filters (2 queries)."""
    query = Q()
    if severity in ALERT_SEVERITIES:
        query &= Q(severity=severity)
    if metric in ALERT_METRICS:
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
        "metrics": ALERT_METRICS,
        "limit": ALERTS_PAGE_LIMIT,
    }


# --- Server ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelineSegment:
    state: str
    left: float
    width: float
    start_iso: str
    end_iso: str


@dataclass(frozen=True, slots=True)
class History:
    """A server's last 24 h of 5-minute means and dominant states, oldest first."""

    times: list[int]
    values: dict[str, list[float]]
    states: list[str]


@dataclass(frozen=True, slots=True)
class ForecastFacts:
    """The server's forecast in the current run, as the page's facts panel shows it."""

    method: str
    fallback_reason: str
    prob_30m_pct: str
    prob_8h_pct: str
    state: str
    origin: datetime
    origin_iso: str
    origin_utc: str
    encoder_steps: int
    stale: bool
    age_minutes: int
    summary: dict
    payload: dict
    explanation: dict  # forecasting.engine.explanation: the input importance chart and attention shading


@dataclass(frozen=True, slots=True)
class Chart:
    """One fan chart: its header numbers and the JSON the browser draws (charts.js)."""

    metric: str
    label: str
    unit: str
    summary: dict
    json_id: str
    data: dict
    accuracy: str = ""  # the live accuracy line under the chart
    accuracy_bands: str = ""  # per horizon band: served × naive and the raw TFT's beside it (24 h)
    blend: str = ""  # the blend weights in force: the current forecast's per band


def _state_segments(times: list[int], states: list[str], step_seconds: int) -> list[TimelineSegment]:
    """Consecutive buckets in the same state merged into one segment (a few dozen, not 288 divs)."""
    if not times:
        return []
    start, end = times[0], times[-1] + step_seconds
    span = (end - start) or 1
    merged: list[list] = []  # [state, start, end]
    for t, state in zip(times, states, strict=True):
        if merged and merged[-1][0] == state and merged[-1][2] == t:
            merged[-1][2] = t + step_seconds
        else:
            merged.append([state, t, t + step_seconds])
    return [
        TimelineSegment(
            state=state,
            left=round(100 * (seg_start - start) / span, 3),
            width=round(100 * (seg_end - seg_start) / span, 3),
            start_iso=datetime.fromtimestamp(seg_start, tz=UTC).isoformat(),
            end_iso=datetime.fromtimestamp(seg_end, tz=UTC).isoformat(),
        )
        for state, seg_start, seg_end in merged
    ]


def _history(server: Server) -> History:
    since = server.last_seen - timedelta(hours=HISTORY_HOURS)
    buckets = (
        MetricBucket.objects.filter(server=server, bucket_start__gt=since, count__gt=0)
        .order_by("bucket_start")
        .values_list("bucket_start", "count", *(f"{m}_sum" for m in METRICS), *(f"n_{s}" for s in STATES))
    )
    history = History(times=[], values={m: [] for m in METRICS}, states=[])
    n_metrics = len(METRICS)
    for row in buckets:
        history.times.append(int(row[0].timestamp()))
        for i, metric in enumerate(METRICS):
            history.values[metric].append(round(row[2 + i] / row[1], 3))
        history.states.append(dominant_state(dict(zip(STATES, row[2 + n_metrics :], strict=True))))
    return history


def _forecast_facts(run: PredictionRun | None, server: Server, *, now: datetime) -> ForecastFacts | None:
    if run is None:
        return None
    row = (
        served_forecasts().filter(server=server)
        .values("method", "fallback_reason", "prob_30m", "prob_8h", "state", "summary", "origin", "payload",
                "encoder_steps", "explanation")
        .first()
    )
    if row is None:
        return None
    origin = row["origin"]
    return ForecastFacts(
        method=row["method"],
        fallback_reason=row["fallback_reason"],
        prob_30m_pct=_pct(row["prob_30m"]),
        prob_8h_pct=_pct(row["prob_8h"]),
        state=row["state"],
        origin=origin,
        origin_iso=origin.isoformat(),
        origin_utc=_utc(origin),
        encoder_steps=row["encoder_steps"],
        stale=is_stale(origin, now=now),
        age_minutes=max(0, int((now - origin).total_seconds() // 60)),
        summary=row["summary"],
        payload=json.loads(row["payload"]),
        explanation=row["explanation"] or stored_explanation(row["method"]),
    )


def _attention_shading(forecast: ForecastFacts | None) -> dict | None:
    """The attention blocks placed on the time axis (they end at the forecast's origin)."""
    attention = (forecast.explanation.get("attention") if forecast else None) or {}
    blocks = attention.get("blocks") or []
    if not blocks:
        return None
    block_seconds = int(attention["block_minutes"]) * 60
    t0 = int(forecast.origin.timestamp()) - len(blocks) * block_seconds
    return {"t0": t0, "block_seconds": block_seconds, "blocks": blocks}


def _limits(forecast: ForecastFacts | None) -> dict[str, tuple[float | None, float | None]]:
    """Warning and critical per metric: the forecast's own, or before any forecast the absolute
    limits (relative ones need the model's context)."""
    if forecast is not None:
        return {m: (forecast.summary.get(m, {}).get("warning"), forecast.summary.get(m, {}).get("critical"))
                for m in METRICS}
    rules = alert_thresholds()
    return {m: (None, None) if rules[m]["relative"] else (rules[m]["warning"], rules[m]["critical"]) for m in METRICS}


def _charts(history: History, forecast: ForecastFacts | None, *, step_seconds: int,
            accuracy: dict | None = None) -> list[Chart]:
    limits = _limits(forecast)
    shading = _attention_shading(forecast)
    charts = []
    for metric in METRICS:
        label, unit = METRIC_LABELS[metric]
        fc = forecast.payload.get(metric) if forecast else None
        scores = (accuracy or {}).get(metric, {}).get("24h", {})
        warning, critical = limits[metric]
        charts.append(
            Chart(
                metric=metric,
                label=label,
                unit=unit,
                summary=forecast.summary.get(metric, {}) if forecast else {},
                json_id=f"data-{metric}",
                accuracy=accuracy_line(scores),
                accuracy_bands=band_accuracy_line(scores["bands"]) if scores.get("n") else "",
                blend=blend_line(fc.get("blend")) if fc else "",
                data={
                    "metric": metric,
                    "label": label,
                    "unit": unit,
                    "history_t": history.times,
                    "history": history.values[metric],
                    # The fan is drawn from the forecast's origin, wherever "now" is.
                    "forecast_t0": int(forecast.origin.timestamp()) if forecast else None,
                    "stale": bool(forecast and forecast.stale),
                    "step_seconds": step_seconds,
                    "p10": fc["p10"] if fc else [],
                    "p50": fc["p50"] if fc else [],
                    "p90": fc["p90"] if fc else [],
                    "warning": warning,
                    "critical": critical,
                    "attention": shading,
                },
            )
        )
    return charts


def server_detail(*, name: str, now: datetime | None = None) -> dict | None:
    """The server page: 24 h of history, the current forecast, state timeline, alerts, live accuracy
    and the server's own incident history (8 queries, after folding pending ingest increments)."""
    records_fold()
    server = Server.objects.filter(name=name).first()
    if server is None:
        return None
    now = now or _now()
    step = settings.TFT_STEP_MINUTES
    history = _history(server)
    run = current_run()
    forecast = _forecast_facts(run, server, now=now)
    return {
        "server": server,
        "profile": PROFILE_LABELS.get(server.profile, server.profile),
        "ready": server.record_count >= settings.TFT_WARMUP_RECORDS,
        "warmup_threshold": settings.TFT_WARMUP_RECORDS,
        "warmup_percent": min(100, 100 * server.record_count // settings.TFT_WARMUP_RECORDS),
        "run": run,
        "forecast": forecast,
        "stale_after_minutes": stale_after_minutes(),
        "charts": _charts(history, forecast, step_seconds=step * 60,
                          accuracy=server_accuracy(server_name=name, now=now)),
        "timeline": _state_segments(history.times, history.states, step * 60),
        "timeline_states": sorted(set(history.states), key=STATE_SEVERITY.__getitem__),
        "alerts": _alert_rows(Alert.objects.filter(server=server).order_by("-opened_at")[:50]),
        "horizon_hours": HORIZON * STEP_MINUTES // 60,
        "incident_history": _incident_history_text(server_incident_history(server_id=server.pk, now=now)),
        "incident_rule": _incident_rule_text(server_incident_rule(server_id=server.pk, now=now)),
    }


def _incident_history_text(history: dict[str, dict[str, float]]) -> str:
    """"8 h: 12 % of 40 h of windows · 30 min: 0.0 % of 40 h of windows" — the event model's history input, as
    the operator reads it; "" without any."""
    parts = [f"{label}: {_pct_label(history[w]['share'])} of {history[w]['hours']:.0f} h of windows"
             for w, label in (("8h", "8 h"), ("30m", "30 min")) if w in history]  # fmt: skip
    return " · ".join(parts)


def _incident_rule_text(rule: dict | None) -> str:
    """When the server's incident_prob alert opens, as the operator reads it: "opens at P(8 h) ≥ 30 % (3 ×
    its usual 10 %; the event model's P, before the fleet map)", "not yet: learning its usual P(8 h), 2.5
    of 6 h kept" (no alert can open yet), or "off"."""
    if rule is None:
        return "off"
    if rule["threshold"] is None:
        return f"not yet: learning its usual P(8 h), {rule['usual_hours']:.1f} of {rule['need_hours']:g} h kept"
    why = []
    if rule["usual"] is not None and rule["rise"] * rule["usual"] >= rule["threshold"]:
        why.append(f"{rule['rise']:g} × its usual {_pct_label(rule['usual'])}")
    why.append("the event model's P, before the fleet map" if rule["source"] == "model" else "the P served")
    return f"opens at P(8 h) ≥ {_pct_label(rule['threshold'])} ({'; '.join(why)})"


# --- Poll --------------------------------------------------------------------------------------------


def poll_signature() -> dict:
    """What the pages poll: when any of it changes, the page fetches itself again (3 queries)."""
    run = current_run()
    alerts = Alert.objects.aggregate(n=Count("id"), changed=Max("updated_at"))
    readiness = fleet_readiness()
    return {
        "run_id": run.pk if run else None,
        "run_finished_at": run.finished_at.isoformat() if run else None,
        "alerts": alerts["n"],
        "alerts_changed_at": alerts["changed"].isoformat() if alerts["changed"] else None,
        "servers_tracked": readiness.tracked,
        "servers_ready": readiness.ready,
        "warmup_progress_percent": readiness.progress_percent,
        "interval_seconds": settings.TFT_PREDICTION_INTERVAL_SECONDS,
    }


# --- Maintenance windows and the alert timeline ----------------------------------------------------


@dataclass(frozen=True)
class WindowRow:
    pk: int
    servers: str
    metric: str
    state: str  # active / upcoming
    starts_iso: str
    starts_utc: str
    ends_iso: str
    ends_utc: str
    reason: str
    created_by: str
    covered: list[str]  # the servers it covers now (names)


def windows_board(*, now: datetime | None = None) -> dict:
    """The windows page: active and upcoming maintenance windows with the servers each covers, and
    the servers silenced by reporting state maintenance (3 queries)."""
    now = now or _now()
    windows = maintenance_windows_current(now=now)
    names = list(Server.objects.order_by("name").values_list("name", flat=True)) if windows else []
    rows = [
        WindowRow(pk=w.pk, servers=w.servers, metric=w.metric or "all", state="active" if w.starts_at <= now else "upcoming",
                  starts_iso=w.starts_at.isoformat(), starts_utc=_utc(w.starts_at), ends_iso=w.ends_at.isoformat(),
                  ends_utc=_utc(w.ends_at), reason=w.reason, created_by=w.created_by,
                  covered=window_server_names(window=w, names=names))
        for w in windows
    ]
    by_state = {"maintenance": sorted(n for n, why in silenced_server_names(now=now).items()
                                      if why == "state maintenance")}
    return {"active": [r for r in rows if r.state == "active"], "upcoming": [r for r in rows if r.state == "upcoming"],
            **by_state}


@dataclass(frozen=True)
class TimelineEvent:
    alert_id: int
    metric: str
    kind: str
    severity: str
    at_iso: str
    at_utc: str
    message: str
    run_id: int | None


TIMELINE_LIMIT = 100


def alert_timeline(*, server_name: str) -> list[TimelineEvent]:
    """A server's alert transitions, newest first (opened, severity changes, acknowledged, resolved,
    silenced), each with the forecast message that caused it (1 query)."""
    rows = (AlertTransition.objects.filter(alert__server__name=server_name).order_by("-at", "-pk")
            .values_list("alert_id", "alert__metric", "kind", "severity", "at", "message", "run_id")[:TIMELINE_LIMIT])
    return [TimelineEvent(alert_id=a, metric=m, kind=k.replace("_", " "), severity=sev, at_iso=at.isoformat(),
                          at_utc=_utc(at), message=msg, run_id=run) for a, m, k, sev, at, msg, run in rows]
