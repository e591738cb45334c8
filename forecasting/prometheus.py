"""GET /metrics: the service and its forecasts in the Prometheus text format.

Three parts, concatenated:
- per-request feed metrics (ingest.feed_metrics) from prometheus_client's multiprocess files, so
  every gunicorn worker's requests are counted whichever worker Prometheus happens to scrape;
- service metrics derived from the database at scrape time (records stored, batches, servers,
  the current run, model version, open alerts): identical from every worker, no per-process state;
- the forecasts of the latest complete run as gauges. They change once per run, so each worker
  renders them once per run and serves the cached text until the next run completes.

Label cardinality (documented in the README): `server` is bounded by the fleet, `metric` by the
contract's 4 metrics, `quantile` by 3, `horizon` by 4, `window` by 2, `severity` by 2, `reason` by
the fallback reason codes and `phase` by the run's phases. Per server that is 48 tft_forecast, 12
tft_forecast_peak, 4 tft_forecast_current, 8 tft_forecast_threshold and 2 tft_incident_probability
series: 74 series a server, 74,000 for 1,000 servers. Live accuracy adds `band` (3): 4 families
× 4 metrics × 3 bands = 48 series a server once its forecasts are scored (48,000 for 1,000 servers),
as served; the raw TFT's ratio to naive adds tft_forecast_mase_vs_naive{kind="raw"} per metric × band
(12 series a TFT-forecast server: 60 with the served 48), of the active model version only, and
tft_forecast_scored_targets has `kind` (2) × `version` (the versions scored in the last 24 h, one or
two but right after switches). No label carries a timestamp or an id.

No model code is imported here: the web process never loads torch.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import threading
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Count
from django.http import HttpResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from access.read_limits import MetricsRateThrottle, read_cached
from forecasting.engine.spec import STEP_MINUTES
from forecasting.models import Alert, ForecastScore, PredictionRun
from forecasting.registry import active_model_version
from forecasting.runs.selectors import current_run, served_forecasts
from forecasting.scoring.selectors import probability_reliability, scored_targets, series_accuracy
from ingest.selectors import counters_totals, fleet_readiness

# Forecast step (1-based, 5-minute steps) per horizon label: 30 min, 1 h, 4 h, 8 h ahead.
HORIZON_STEPS: dict[str, int] = {
    label: minutes // STEP_MINUTES for label, minutes in (("30m", 30), ("1h", 60), ("4h", 240), ("8h", 480))
}
QUANTILE_LABELS: dict[str, str] = {"p10": "0.1", "p50": "0.5", "p90": "0.9"}

_cache_lock = threading.Lock()
_forecast_cache: dict[str, object] = {"run_id": None, "text": b""}


def _key_ok(request) -> bool:
    key = settings.TFT_METRICS_API_KEY
    if not key:
        return True
    auth = request.META.get("HTTP_AUTHORIZATION", "")
    presented = auth[7:].strip() if auth[:7].lower() == "bearer " else request.META.get("HTTP_X_API_KEY", "")
    return hmac.compare_digest(presented.encode(), key.encode())


def metrics_view(request):
    """GET /metrics (a plain Django view: no DRF negotiation on a path scraped every few seconds)."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    if not _key_ok(request):
        return HttpResponse(
            "metrics need a key: Authorization: Bearer <TFT_METRICS_API_KEY> or X-API-Key\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    throttle = MetricsRateThrottle()
    if not throttle.allow_request(request, None):
        wait = int(throttle.wait()) + 1
        return HttpResponse(f"too many scrapes from this client; retry in {wait} s\n", status=429,
                            content_type="text/plain", headers={"Retry-After": str(wait)})
    run = current_run()
    body = read_cached(name="metrics", run_id=run.pk if run else None, render=metrics_text)
    # The classic 0.0.4 text format: every Prometheus 2.x and 3.x parses it (our names are legacy-safe).
    return HttpResponse(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)


def metrics_text(*, now: datetime | None = None) -> bytes:
    now = now or datetime.now(UTC)
    run = current_run()
    version = active_model_version()
    active = version.name if version else None
    parts = [_process_text(), generate_latest(_Registry([ServiceCollector(run=run, active=active, now=now)]))]
    if run is not None:
        parts.append(_forecast_text(run, active=active))
    return b"".join(parts)


class _Registry(CollectorRegistry):
    """A throwaway registry around collectors built for one scrape."""

    def __init__(self, collectors):
        super().__init__(auto_describe=False)
        self._scrape_collectors = collectors

    def collect(self):
        for collector in self._scrape_collectors:
            yield from collector.collect()


def _process_text() -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    from prometheus_client import REGISTRY

    import ingest.feed_metrics  # noqa: F401  (registers the feed metrics in this process)

    return generate_latest(REGISTRY)


_PROBABILITY_SCORES: dict[str, str] = {
    "n": "Served incident probabilities resolved (their window passed), last TFT_PROBABILITY_SCORE_DAYS days.",
    "events": "Of them, those in which an incident started.",
    "base_rate": "The fleet's own observed incident rate.",
    "brier": "Live Brier score of the served incident probabilities (lower is better).",
    "skill": "Live Brier skill vs the fleet's own observed rate (> 0: the probabilities carry information).",
    "auc": "Live AUC of the served incident probabilities.",
    "pending": "Served incident probabilities whose window has not passed yet.",
    "map_a": "Live recalibration map, fleet: served = sigmoid(a + b * logit(model probability)); a.",
    "map_b": "Live recalibration map, fleet: b.",
}


class ServiceCollector:
    """Service metrics from the database: a handful of small queries, whatever the fleet size."""

    def __init__(self, *, run: PredictionRun | None, active: str | None, now: datetime):
        self.run = run
        self.active = active  # the active model version's name, None without one
        self.now = now

    def collect(self):
        totals = counters_totals()
        yield CounterMetricFamily(
            "tft_feed_batches", "Accepted POST /feed/data batches (persisted in the database).", value=totals.batches
        )
        yield GaugeMetricFamily("tft_records_stored", "Raw records held across all servers.", value=totals.records)
        readiness = fleet_readiness()
        servers = GaugeMetricFamily(
            "tft_servers",
            "Servers by warmup status (tracked: feeding; silent: no batch for TFT_SERVER_SILENT_AFTER_MINUTES).",
            labels=["status"],
        )
        servers.add_metric(["tracked"], readiness.tracked)
        servers.add_metric(["ready"], readiness.ready)
        servers.add_metric(["silent"], readiness.silent)
        yield servers

        yield from self._run_families()
        yield from self._alert_families()
        yield from self._probability_families()

    def _probability_families(self):
        """The served incident probabilities scored live (issue 22): one GROUP BY, 2 windows."""
        scores = probability_reliability(now=self.now)["windows"]
        families = {
            key: GaugeMetricFamily(f"tft_probability_{key}", help_text, labels=["window"])
            for key, help_text in _PROBABILITY_SCORES.items()
        }
        reliability = GaugeMetricFamily(
            "tft_probability_reliability_frequency",
            "Observed incident frequency among served probabilities in the bin (10 equal bins), last days.",
            labels=["window", "bin"],
        )
        for window, entry in scores.items():
            for key, family in families.items():
                value = entry["map"][key[4:]] if key.startswith("map_") else entry[key]
                if value is not None:
                    family.add_metric([window], float(value))
            for row in entry["reliability"]:
                reliability.add_metric([window, row["bin"]], row["frequency"])
        yield from families.values()
        yield reliability

    def _run_families(self):
        last = PredictionRun.objects.order_by("-started_at").values_list("status", flat=True).first()
        attempt = GaugeMetricFamily(
            "tft_prediction_last_attempt", "1 for the status of the latest prediction run attempt.", labels=["status"]
        )
        for status in PredictionRun.Status.values:
            attempt.add_metric([status], 1.0 if last == status else 0.0)
        yield attempt
        active = GaugeMetricFamily("tft_model_active_info", "The active model version (1).", labels=["version"])
        active.add_metric([self.active or ""], 1.0)
        yield active
        run = self.run
        if run is None:
            return
        info = GaugeMetricFamily(
            "tft_model_info",
            "Model of the current (latest complete) run: version, device, method (1).",
            labels=["version", "device", "model_type"],
        )
        info.add_metric([run.model_name or "", run.device or "cpu", "TFT" if run.tft_count else "heuristic"], 1.0)
        yield info
        yield GaugeMetricFamily(
            "tft_prediction_run_duration_seconds",
            "Wall time of the current run, start to finalisation.",
            value=run.duration_seconds or 0.0,
        )
        yield GaugeMetricFamily(
            "tft_prediction_run_age_seconds",
            "Seconds since the current run finished (alert on it: forecasts are stale).",
            value=(self.now - run.finished_at).total_seconds(),
        )
        yield GaugeMetricFamily(
            "tft_prediction_run_finished_timestamp_seconds",
            "Unix time the current run finished.",
            value=run.finished_at.timestamp(),
        )
        phases = GaugeMetricFamily(
            "tft_prediction_run_phase_seconds", "Seconds per phase of the current run, summed over chunks.",
            labels=["phase"],
        )
        for phase, seconds in sorted(run.durations.items()):
            phases.add_metric([phase], float(seconds))
        yield phases
        by_method = GaugeMetricFamily(
            "tft_prediction_run_servers", "Servers forecast in the current run by method.", labels=["method"]
        )
        by_method.add_metric(["tft"], run.tft_count)
        by_method.add_metric(["heuristic"], run.fallback_count)
        yield by_method
        yield GaugeMetricFamily(
            "tft_prediction_fallback_servers",
            "Servers the current run forecast with the heuristic instead of the TFT.",
            value=run.fallback_count,
        )
        reasons = GaugeMetricFamily(
            "tft_prediction_fallback_reason_servers",
            "Fallback servers of the current run by reason code.",
            labels=["reason"],
        )
        for reason, n in sorted(run.fallback_reasons.items()):
            reasons.add_metric([reason], n)
        yield reasons
        env = run.environment or {}
        fleet = GaugeMetricFamily(
            "tft_fleet_incident_probability",
            "Probability that at least one server has an incident within the window.",
            labels=["window"],
        )
        for window in ("30m", "8h"):
            fleet.add_metric([window], float(env.get(f"prob_{window}", 0.0)))
        yield fleet
        yield GaugeMetricFamily(
            "tft_fleet_high_risk_servers", "Servers whose 8-hour incident probability is high.",
            value=env.get("high_risk_servers", 0),
        )
        health = GaugeMetricFamily("tft_fleet_health", "1 for the fleet's health state.", labels=["state"])
        for state in ("healthy", "warning", "critical"):
            health.add_metric([state], 1.0 if env.get("fleet_health") == state else 0.0)
        yield health

    def _alert_families(self):
        active = GaugeMetricFamily(
            "tft_alert_active",
            "1 per open (active or acknowledged) forecast alert.",
            labels=["server", "metric", "severity"],
        )
        counts = GaugeMetricFamily("tft_alerts_open", "Open alerts by severity and state.", labels=["severity", "state"])
        tally = {(sev, st): 0 for sev in Alert.Severity.values for st in ("active", "acknowledged")}
        rows = Alert.objects.filter(state__in=["active", "acknowledged"]).values_list(
            "server__name", "metric", "severity", "state"
        )
        for server, metric, severity, state in rows:
            active.add_metric([server, metric, severity], 1.0)
            tally[(severity, state)] = tally.get((severity, state), 0) + 1
        for (severity, state), n in sorted(tally.items()):
            counts.add_metric([severity, state], n)
        yield active
        yield counts
        # Flaps: an alert of the server opening again within TFT_ALERT_FLAP_WINDOW_MINUTES of the same
        # metric's previous one resolving (alerts.services sets Alert.flap). A counter: alerts are kept.
        flaps = CounterMetricFamily(
            "tft_alert_flaps", "Alerts that reopened soon after resolving (flapping), per server.", labels=["server"]
        )
        by_server = Alert.objects.filter(flap=True).values("server__name").annotate(n=Count("pk")).order_by()
        for row in by_server:
            flaps.add_metric([row["server__name"]], row["n"])
        yield flaps


def _forecast_text(run: PredictionRun, *, active: str | None) -> bytes:
    with _cache_lock:
        if _forecast_cache["run_id"] == run.pk:
            return _forecast_cache["text"]
    # Scores change once per scoring pass (minutes), so they are cached with the run's forecasts.
    text = forecast_exposition(run=run) + accuracy_exposition(active=active)
    with _cache_lock:
        _forecast_cache.update(run_id=run.pk, text=text)
    return text


_FORECAST_FAMILIES: dict[str, str] = {
    "tft_forecast": "Forecast value of a metric at a horizon (30m, 1h, 4h, 8h ahead) and quantile (0.1, 0.5, 0.9).",
    "tft_forecast_peak": "Highest forecast value over the next 8 hours per quantile.",
    "tft_forecast_current": "Last observed value the forecast starts from.",
    "tft_forecast_threshold": "Alert threshold used for this server and metric.",
    "tft_incident_probability": "Probability that a metric of the server crosses its critical threshold within the window.",
}


def _value(v: float) -> str:
    # Go-style special values; finite floats as Python's shortest round-trip repr.
    v = float(v)
    if math.isfinite(v):
        return repr(v)
    return "NaN" if math.isnan(v) else ("+Inf" if v > 0 else "-Inf")


def _label(value: str) -> str:
    # Validated names never need it; a name stored by some other path must not break the format.
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def forecast_exposition(*, run: PredictionRun) -> bytes:
    """The current run's forecasts as exposition text: one query for all servers.

    Written directly rather than through prometheus_client's families: its per-sample label
    validation costs ~80 µs, 6 s for the 74,000 samples of 1,000 servers. Server names are validated
    to [A-Za-z0-9._:@-] (escaped anyway if not) and metrics are the contract's names.
    """
    lines: dict[str, list[str]] = {name: [] for name in _FORECAST_FAMILIES}
    forecast, peak, current = lines["tft_forecast"], lines["tft_forecast_peak"], lines["tft_forecast_current"]
    threshold, probability = lines["tft_forecast_threshold"], lines["tft_incident_probability"]
    rows = served_forecasts().values_list("server__name", "payload", "summary", "prob_30m", "prob_8h")
    for name, payload_text, summary, p30, p8h in rows.iterator(chunk_size=500):
        server = _label(name)
        payload = json.loads(payload_text)
        for metric, data in payload.items():
            base = f'server="{server}",metric="{metric}"'
            for key, q in QUANTILE_LABELS.items():
                values = data.get(key) or []
                for horizon, step in HORIZON_STEPS.items():
                    if len(values) >= step:
                        forecast.append(f'tft_forecast{{{base},quantile="{q}",horizon="{horizon}"}} {_value(values[step - 1])}')
                if values:
                    peak.append(f'tft_forecast_peak{{{base},quantile="{q}"}} {_value(max(values))}')
            if "current" in data:
                current.append(f"tft_forecast_current{{{base}}} {_value(data['current'])}")
            limits = (summary or {}).get(metric) or {}
            for level in ("warning", "critical"):
                if level in limits:
                    threshold.append(f'tft_forecast_threshold{{{base},level="{level}"}} {_value(limits[level])}')
        probability.append(f'tft_incident_probability{{server="{server}",window="30m"}} {_value(p30)}')
        probability.append(f'tft_incident_probability{{server="{server}",window="8h"}} {_value(p8h)}')
    out = []
    for name, help_text in _FORECAST_FAMILIES.items():
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *lines[name]]
    return ("\n".join(out) + "\n").encode()


_ACCURACY_FAMILIES: dict[str, tuple[str, str]] = {
    "tft_forecast_mase": ("mase", "Live MASE of the last 24 h of forecasts (MAE / the server's 1-step naive MAE)."),
    "tft_forecast_mase_vs_naive": ("mase_vs_naive", "MAE / MAE of the naive (last value) forecast, last 24 h "
                                   "(kind raw: the active model's own quantiles, before blend and calibration)."),
    "tft_forecast_pinball": ("pinball", "Mean pinball loss over p10/p50/p90 (metric's unit), last 24 h."),
    "tft_forecast_coverage": ("coverage_80", "Share of observed targets inside the served p10–p90, last 24 h."),
}


_RAW_FAMILY = "tft_forecast_mase_vs_naive"  # the raw TFT's figure exported beside the served one
_TARGETS_FAMILY = "tft_forecast_scored_targets"
_TARGETS_HELP = ("Scored targets behind the accuracy gauges, last 24 h, per kind and model version (heuristic: the "
                 "fallback's): the versions the figures describe.")


def accuracy_exposition(*, active: str | None, now: datetime | None = None) -> bytes:
    """Live accuracy per server × metric × horizon band, two grouped queries; a series without
    scored targets yet is left out rather than exported as NaN.

    The four families are of the forecasts as served, over every model version that served in the
    last 24 h, with the labels they always had (server, metric, band): dashboards read them as before.
    Beside them tft_forecast_mase_vs_naive carries the raw TFT's ratio (its own quantiles, before the
    blend with the last value and the interval calibration, on the same targets) with `kind="raw"`,
    of the active model version only; select the served ones with `kind!="raw"` where a query does
    not name a server. tft_forecast_scored_targets says which versions each kind describes.
    ``active``: the active model version's name."""
    lines: dict[str, list[str]] = {name: [] for name in _ACCURACY_FAMILIES}
    raw_key = _ACCURACY_FAMILIES[_RAW_FAMILY][0]
    for (kind, server, metric, band), scores in sorted(series_accuracy(raw_model=active, now=now).items()):
        labels = f'server="{_label(server)}",metric="{metric}",band="{band}"'
        if kind == ForecastScore.Kind.RAW:
            if scores[raw_key] is not None:
                lines[_RAW_FAMILY].append(f'{_RAW_FAMILY}{{{labels},kind="raw"}} {_value(scores[raw_key])}')
            continue
        for name, (key, _) in _ACCURACY_FAMILIES.items():
            if scores[key] is not None:
                lines[name].append(f"{name}{{{labels}}} {_value(scores[key])}")
    targets = []
    for (kind, version), n in sorted(scored_targets(window="24h", now=now).items()):
        if kind == ForecastScore.Kind.RAW and version != active:
            continue  # the raw gauges describe the active version only
        label = _label(version) if version else "heuristic"
        targets.append(f'{_TARGETS_FAMILY}{{kind="{kind}",version="{label}"}} {n}')
    out = []
    for name, (_, help_text) in _ACCURACY_FAMILIES.items():
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *lines[name]]
    out += [f"# HELP {_TARGETS_FAMILY} {_TARGETS_HELP}", f"# TYPE {_TARGETS_FAMILY} gauge", *targets]
    return ("\n".join(out) + "\n").encode()
