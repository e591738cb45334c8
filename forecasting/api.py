"""Read API over stored runs: it never runs the model.

The prediction bodies are spliced from stored JSON for speed (forecasting.runs.selectors), so the
serializers here declare their shape for the schema (GET /api/schema/) rather than render them;
tests/integrations/test_schema_conformance.py checks every real body against that schema.
"""

import base64
import json
import logging
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from access.errors import ErrorSerializer
from access.read_limits import HeavyReadRateThrottle, read_cached
from access.throttles import ReadRateThrottle
from access.views import FeedApiView, ReadApiView
from forecasting.alerts.selectors import open_alerts_contract
from forecasting.alerts.silences import maintenance_window_create, maintenance_window_end
from forecasting.runs.selectors import (
    current_run,
    predictions_current_json,
    predictions_page_json,
    server_forecast_json,
)
from forecasting.scoring.selectors import probability_reliability
from forecasting.windows import maintenance_windows_current
from ingest.contract import METRICS, SERVER_NAME_PATTERN, SERVER_NAME_RE
from ingest.selectors import fleet_readiness

logger = logging.getLogger(__name__)

# ?names=guide: the metric names the original daemon's clients read (the integration guide's
# response example), for the same four forecasts.
GUIDE_METRIC_NAMES = {
    "cpu_pct": "cpu_percent",
    "mem_pct": "memory_percent",
    "disk_io_mb_s": "disk_percent",
    "latency_ms": "load_average",
}


# --- Shapes shared by the three read endpoints ----------------------------------------------------


class CalibrationFactorsSerializer(serializers.Serializer):
    lower = serializers.ListField(
        child=serializers.FloatField(),
        help_text="per horizon band (0–30 min, 30 min–2 h, 2–8 h): factor on the distance of the quantiles "
        "below p50 from p50 (1 = the model's own interval)",
    )
    upper = serializers.ListField(child=serializers.FloatField(), help_text="the same above p50")


class BlendWeightsSerializer(serializers.Serializer):
    model = serializers.ListField(
        child=serializers.FloatField(),
        help_text="per horizon band (0–30 min, 30 min–2 h, 2–8 h): the model's weight in the served quantiles "
        "(1 = the model alone)",
    )
    last_value = serializers.ListField(
        child=serializers.FloatField(),
        help_text="the same for persistence (the last value with its own spread): 1 − model",
    )


class MetricForecastSerializer(serializers.Serializer):
    p10 = serializers.ListField(child=serializers.FloatField(), help_text="96 values, 5-minute steps (8 h)")
    p50 = serializers.ListField(child=serializers.FloatField())
    p90 = serializers.ListField(child=serializers.FloatField())
    current = serializers.FloatField(help_text="the last bucket's mean")
    trend = serializers.FloatField(help_text="least-squares slope of p50 per step")
    origin = serializers.DateTimeField(help_text="when the first forecast step starts (just after the last bucket)")
    stale = serializers.BooleanField(
        help_text="the origin is older than TFT_STALE_AFTER_MINUTES at the run's start: old data, not the present"
    )
    calibration = CalibrationFactorsSerializer(
        required=False,
        help_text="the server's self-calibrated interval factors applied to this forecast (adaptive conformal, "
        "from its own scored forecasts; heuristic forecasts: all 1). Absent on forecasts stored before calibration.",
    )
    blend = BlendWeightsSerializer(
        required=False,
        help_text="the per-band blend of the model with the last value this forecast was served with (the model "
        "folder's weights moved by the server's own scored forecasts; heuristic forecasts: the model weight 1). "
        "Applied before the calibration. Absent on forecasts stored before the blend was served.",
    )


class ServerPredictionSerializer(serializers.Serializer):
    cpu_pct = MetricForecastSerializer()
    mem_pct = MetricForecastSerializer()
    disk_io_mb_s = MetricForecastSerializer()
    latency_ms = MetricForecastSerializer()


class GuideServerPredictionSerializer(serializers.Serializer):
    cpu_percent = MetricForecastSerializer(help_text="cpu_pct")
    memory_percent = MetricForecastSerializer(help_text="mem_pct")
    disk_percent = MetricForecastSerializer(help_text="disk_io_mb_s (MB/s, not a percentage)")
    load_average = MetricForecastSerializer(help_text="latency_ms (milliseconds, not a load average)")


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    server = serializers.CharField()
    metric = serializers.CharField(
        help_text="cpu_pct, mem_pct, disk_io_mb_s or latency_ms (guide names with ?names=guide); "
        "incident for the server's incident-probability alert (rule incident_prob); trend for its trend "
        "alert (rule trend_projection: the message names the metric)"
    )
    severity = serializers.ChoiceField(choices=["warning", "critical"])
    state = serializers.ChoiceField(choices=["active", "acknowledged"])
    rule = serializers.CharField(help_text="p50_critical, p50_warning, p90_early_warning, trend_projection or incident_prob")
    predicted_value = serializers.FloatField(help_text="the metric's forecast peak; for incident_prob, P(8 h) in %; "
                                             "for trend_projection, the line's value at its reach")
    threshold = serializers.FloatField(help_text="the limit it reached; for incident_prob, its threshold in %")
    steps_ahead = serializers.IntegerField()
    minutes_ahead = serializers.IntegerField()
    message = serializers.CharField()
    opened_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)


class EnvironmentSerializer(serializers.Serializer):
    prob_30m = serializers.FloatField(
        help_text="P(at least one server crosses a critical threshold within 30 min), servers independent"
    )
    prob_8h = serializers.FloatField(help_text="the same within 8 h")
    expected_incidents_30m = serializers.FloatField(
        required=False, help_text="expected number of servers crossing a critical threshold within 30 min "
        "(sum of server prob_30m): grows with fleet size as it should, without saturating at 1"
    )
    expected_incidents_8h = serializers.FloatField(required=False, help_text="the same within 8 h")
    high_risk_servers = serializers.IntegerField()
    total_servers = serializers.IntegerField()
    fleet_health = serializers.ChoiceField(choices=["healthy", "warning", "critical"])


class RunMetadataSerializer(serializers.Serializer):
    model_type = serializers.ChoiceField(choices=["TFT", "heuristic"])
    prediction_time = serializers.DateTimeField()
    horizon_steps = serializers.IntegerField()
    step_minutes = serializers.IntegerField()
    device = serializers.CharField()
    model_version = serializers.CharField(allow_null=True)
    run_id = serializers.IntegerField()
    age_seconds = serializers.FloatField()
    servers = serializers.IntegerField()
    tft_servers = serializers.IntegerField()
    fallback_servers = serializers.IntegerField()


class PageSerializer(serializers.Serializer):
    limit = serializers.IntegerField(help_text="servers per page asked for")
    after = serializers.CharField(allow_null=True, help_text="the server name this page starts after")
    servers = serializers.IntegerField(help_text="servers on this page")


class FleetMetadataSerializer(RunMetadataSerializer):
    methods = serializers.DictField(child=serializers.ChoiceField(choices=["tft", "heuristic"]),
                                    help_text="server → method")
    fallback_reasons = serializers.DictField(child=serializers.CharField(), help_text="server → why it fell back")
    page = PageSerializer(required=False, help_text="only on a paged answer (?limit=, ?cursor= or a large fleet)")


class InsufficientDataSerializer(serializers.Serializer):
    error = serializers.ChoiceField(choices=["insufficient_data"])
    message = serializers.CharField()
    servers_ready = serializers.IntegerField()
    servers_tracked = serializers.IntegerField()
    required_size = serializers.IntegerField()


INSUFFICIENT_DATA = OpenApiResponse(
    InsufficientDataSerializer,
    description="No complete prediction run yet (warmup); Retry-After says when to ask again.",
    examples=[
        OpenApiExample(
            "Warming up",
            value={"error": "insufficient_data",
                   "message": "No server has finished warmup: 0/20 ready (150 records each; the least-fed server has 42)",
                   "servers_ready": 0, "servers_tracked": 20, "required_size": 150},
        )
    ],
)


def insufficient_data_response() -> Response:
    """The 503 before the first complete run. Expected during warmup, so logged at INFO: Django
    would log every 5xx at ERROR."""
    readiness = fleet_readiness()
    threshold = settings.TFT_WARMUP_RECORDS
    if readiness.ready == 0:
        message = (
            f"No server has finished warmup: {readiness.ready}/{readiness.tracked} ready "
            f"({threshold} records each; the least-fed server has {readiness.min_records})"
        )
    else:
        message = f"{readiness.ready} servers are ready; waiting for the first prediction run"
    body = {"error": "insufficient_data", "message": message, "servers_ready": readiness.ready,
            "servers_tracked": readiness.tracked, "required_size": threshold}
    logger.info("no prediction run to serve yet", extra={"servers_ready": readiness.ready,
                                                         "servers_tracked": readiness.tracked})
    response = Response(body, status=503, headers={"Retry-After": str(settings.TFT_PREDICTION_INTERVAL_SECONDS)})
    response._has_been_logged = True  # django.utils.log.log_response: already logged, at INFO
    return response


def _json(body: str | bytes) -> HttpResponse:
    return HttpResponse(body, content_type="application/json")


def guide_names(body: dict) -> dict:
    """The same body with each forecast and alert keyed by the guide's metric names."""
    body["predictions"] = {
        server: {GUIDE_METRIC_NAMES.get(metric, metric): forecast for metric, forecast in forecasts.items()}
        for server, forecasts in body["predictions"].items()
    }
    for alert in body["alerts"]:
        alert["metric"] = GUIDE_METRIC_NAMES.get(alert["metric"], alert["metric"])
    return body


# --- Examples ---------------------------------------------------------------------------------------

_SERIES = {"p50": [45.3, 46.1, 47.2, "…96 values"], "p10": [42.1, 43.0, 44.2, "…"], "p90": [48.5, 49.2, 50.3, "…"],
           "current": 45.2, "trend": 0.02, "origin": "2025-10-13T16:30:00+00:00", "stale": False}
_ALERT = {"id": 17, "server": "ppdb001", "metric": "cpu_pct", "severity": "warning", "state": "active",
          "rule": "p50_warning", "predicted_value": 92.3, "threshold": 90.0, "steps_ahead": 12, "minutes_ahead": 60,
          "message": "ppdb001: cpu_pct p50 forecast peaks at 92.3, crossing in 1 h (warning: p50 ≥ warning 90.0)",
          "opened_at": "2025-10-13T16:30:15Z",
          "updated_at": "2025-10-13T16:31:15Z", "acknowledged_at": None}
_METADATA = {"model_type": "TFT", "prediction_time": "2025-10-13T16:30:15.123456+00:00", "horizon_steps": 96,
             "step_minutes": 5, "device": "cuda:0", "model_version": "tft_model_20251013T120000Z", "run_id": 4211,
             "age_seconds": 12.4, "servers": 20, "tft_servers": 20, "fallback_servers": 0}
_ENVIRONMENT = {"prob_30m": 0.15, "prob_8h": 0.42, "expected_incidents_30m": 0.16, "expected_incidents_8h": 0.55,
                "high_risk_servers": 3, "total_servers": 20, "fleet_health": "warning"}


NEXT_HELP = "the next page's URL; absent on the last page and when the whole fleet fits in one"


def page_request(params) -> tuple[int, str | None]:
    """(servers per page, the server name a page starts after) from ?limit= and ?cursor=; a bad value
    is a 400 naming the parameter. The cursor is the previous page's last server name, base64url."""
    cap = settings.TFT_PREDICTIONS_PAGE_SIZE
    raw_limit = params.get("limit")
    limit = cap
    if raw_limit is not None:
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= cap:
            raise ValidationError({"limit": f"a whole number from 1 to {cap}"}, code="invalid_request")
        limit = int(raw_limit)
    cursor = params.get("cursor")
    if cursor is None:
        return limit, None
    try:
        after = base64.urlsafe_b64decode(cursor.encode() + b"=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        after = ""
    if not SERVER_NAME_RE.match(after):
        raise ValidationError({"cursor": "not a cursor of this API: use the `next` link as given"}, code="invalid_request")
    return limit, after


def page_query(params, last_server: str) -> dict:
    """The query string of the page after `last_server`: the request's own, with its cursor moved."""
    query = {key: params.get(key) for key in ("names", "limit") if params.get(key)}
    query["cursor"] = base64.urlsafe_b64encode(last_server.encode()).decode().rstrip("=")
    return query


def _guide_or_json(body: str, names: str | None) -> HttpResponse:
    return Response(guide_names(json.loads(body))) if names == "guide" else _json(body)


class PredictionsCurrentApi(ReadApiView):
    """GET /predictions/current — the latest complete run in the contract's shape."""

    throttle_classes = [ReadRateThrottle, HeavyReadRateThrottle]  # tens of MB for a large fleet

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PredictionsCurrent"

        predictions = serializers.DictField(child=ServerPredictionSerializer(), help_text="server name → forecast")
        alerts = AlertSerializer(many=True)
        environment = EnvironmentSerializer()
        metadata = FleetMetadataSerializer()
        next = serializers.URLField(required=False, help_text=NEXT_HELP)

    class GuideOutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PredictionsCurrentGuideNames"

        predictions = serializers.DictField(child=GuideServerPredictionSerializer(),
                                            help_text="server name → forecast, by the guide's metric names")
        alerts = AlertSerializer(many=True)
        environment = EnvironmentSerializer()
        metadata = FleetMetadataSerializer()
        next = serializers.URLField(required=False, help_text=NEXT_HELP)

    @extend_schema(
        summary="Latest forecasts for all servers",
        description="The latest complete prediction run: per server and metric, 96 five-minute steps (8 h) of "
        "p10/p50/p90 with the forecast's origin and staleness, plus open alerts, the fleet environment and run "
        "metadata. `?names=guide` keys the same forecasts (and alerts' `metric`) by the names clients of the "
        "original daemon read: cpu_percent, memory_percent, disk_percent, load_average. A fleet larger than "
        "TFT_PREDICTIONS_PAGE_SIZE (default 1,000 servers) is served in pages in server-name order: the body then "
        "carries `next` (also a `Link: <…>; rel=\"next\"` header) until the last page; `limit` and `cursor` page "
        "any fleet. A page's `alerts` are its servers' own; `environment` is always the whole fleet's.",
        parameters=[
            OpenApiParameter(
                "limit", {"type": "integer", "minimum": 1, "maximum": settings.TFT_PREDICTIONS_PAGE_SIZE},
                required=False, description="servers per page, 1 … TFT_PREDICTIONS_PAGE_SIZE",
            ),
            OpenApiParameter(
                "cursor", {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}, required=False,
                description="the `cursor` of a `next` link: continue there (an opaque token: any other value is a 400)",
            ),
            OpenApiParameter("names", str, enum=["guide"], required=False,
                             description="guide: cpu_pct→cpu_percent, mem_pct→memory_percent, "
                             "disk_io_mb_s→disk_percent, latency_ms→load_average (values unchanged)"),
        ],
        responses={
            200: OpenApiResponse(
                PolymorphicProxySerializer(
                    component_name="PredictionsCurrentResponse",
                    serializers=[OutputSerializer, GuideOutputSerializer],
                    resource_type_field_name=None,
                ),
                examples=[
                    OpenApiExample(
                        "Contract example",
                        value={
                            "predictions": {"ppdb001": dict.fromkeys(METRICS, _SERIES)},
                            "alerts": [_ALERT],
                            "environment": _ENVIRONMENT,
                            "metadata": {**_METADATA, "methods": {"ppdb001": "tft"}, "fallback_reasons": {}},
                        },
                    ),
                    OpenApiExample(
                        "Guide names (?names=guide)",
                        value={
                            "predictions": {"ppdb001": dict.fromkeys(GUIDE_METRIC_NAMES.values(), _SERIES)},
                            "alerts": [{**_ALERT, "metric": "cpu_percent"}],
                            "environment": _ENVIRONMENT,
                            "metadata": {**_METADATA, "methods": {"ppdb001": "tft"}, "fallback_reasons": {}},
                        },
                    ),
                ],
            ),
            400: OpenApiResponse(ErrorSerializer, description="An unknown `names` value, a bad `limit` or `cursor`."),
            503: INSUFFICIENT_DATA,
        },
    )
    def get(self, request):
        names = request.query_params.get("names")
        if names not in (None, "guide"):  # an empty value too, as the schema's enum says
            return Response({"error": "invalid_request", "message": "names: the only value is 'guide'"}, status=400)
        run = current_run()
        if run is None or run.servers == 0:
            return insufficient_data_response()
        params = request.query_params
        if "limit" not in params and "cursor" not in params and run.servers <= settings.TFT_PREDICTIONS_PAGE_SIZE:
            # One body per run and TFT_READ_CACHE_SECONDS per process (several MB): a burst of
            # readers costs one render, not one each (access/read_limits.py).
            body = read_cached(name="predictions_current", run_id=run.pk, render=lambda: predictions_current_json(run))
            return _guide_or_json(body, names)  # the guide's one body
        limit, after = page_request(params)
        page = predictions_page_json(run, after=after, limit=limit)
        if page.last_server is None:
            return _guide_or_json(page.body, names)
        url = request.build_absolute_uri(f"{request.path}?{urlencode(page_query(params, page.last_server))}")
        response = _guide_or_json(page.body[:-1] + f', "next": {json.dumps(url)}}}', names)
        response["Link"] = f'<{url}>; rel="next"'
        return response


class ServerProbabilitiesSerializer(serializers.Serializer):
    prob_30m = serializers.FloatField()
    prob_8h = serializers.FloatField()


class ServerMetadataSerializer(RunMetadataSerializer):
    method = serializers.ChoiceField(choices=["tft", "heuristic"])
    fallback_reason = serializers.CharField(allow_null=True)
    origin = serializers.DateTimeField(help_text="when the first forecast step starts")
    stale = serializers.BooleanField(help_text="the origin is older than TFT_STALE_AFTER_MINUTES")
    encoder_steps = serializers.IntegerField(help_text="5-minute buckets of context the forecast read")
    state = serializers.CharField(help_text="dominant state of the last bucket")


class InputWeightSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="an input of the network (forecasting/engine/inputs.py)")
    weight = serializers.FloatField(help_text="its variable-selection weight; a group's weights sum to 1")


class InputGroupsSerializer(serializers.Serializer):
    static = InputWeightSerializer(many=True, help_text="static inputs (server, profile, normalisers)")
    encoder = InputWeightSerializer(many=True, help_text="past inputs, averaged over the encoder steps")
    decoder = InputWeightSerializer(many=True, help_text="known future inputs, averaged over the horizon")


class AttentionSerializer(serializers.Serializer):
    last_hour = serializers.FloatField(help_text="attention mass on the 12 buckets before the origin")
    same_time_yesterday = serializers.FloatField(help_text="on ±30 min around each forecast step's time 24 h earlier")
    rest = serializers.FloatField(help_text="on the other history buckets (the three sum to 1)")
    block_minutes = serializers.IntegerField()
    blocks = serializers.ListField(child=serializers.FloatField(),
                                   help_text="attention per block of history, oldest first, ending at the origin")


class ExplanationSerializer(serializers.Serializer):
    method = serializers.ChoiceField(choices=["tft", "heuristic"])
    text = serializers.CharField(help_text='what drove the forecast in words, or "heuristic: no model explanation"')
    variables = InputGroupsSerializer(required=False, help_text="heaviest first; absent when not explained")
    attention = AttentionSerializer(required=False, help_text="attention over the history; absent when not explained")
    encoder_steps = serializers.IntegerField(required=False)
    state = serializers.CharField(required=False, allow_blank=True,
                                  help_text="the state whose buckets received the most attention")


_EXPLANATION = {
    "method": "tft",
    "text": "driven by mem_pct history and the heavy_load state; attends to the same time yesterday",
    "variables": {
        "static": [{"name": "mem_pct_mean_z", "weight": 0.41}, {"name": "profile", "weight": 0.59}],
        "encoder": [{"name": "mem_pct", "weight": 0.38}, {"name": "state", "weight": 0.31},
                    {"name": "cpu_pct", "weight": 0.31}],
        "decoder": [{"name": "hour", "weight": 0.62}, {"name": "relative_time", "weight": 0.38}],
    },
    "attention": {"last_hour": 0.21, "same_time_yesterday": 0.34, "rest": 0.45, "block_minutes": 30,
                  "blocks": [0.02] * 48},
    "encoder_steps": 288,
    "state": "heavy_load",
}


class AccuracySerializer(serializers.Serializer):
    """Live accuracy of scored forecasts (forecasting.engine.scoring); null where nothing is scored."""

    mase = serializers.FloatField(allow_null=True, help_text="MAE / the server's own 1-step naive MAE")
    naive_mase = serializers.FloatField(allow_null=True, help_text="MASE of the naive (last value) forecast")
    mase_vs_naive = serializers.FloatField(allow_null=True, help_text="MAE / naive MAE on the same targets (< 1: better)")
    pinball = serializers.FloatField(allow_null=True, help_text="mean pinball loss over p10/p50/p90, metric's unit")
    coverage_80 = serializers.FloatField(allow_null=True, help_text="share of targets inside p10–p90")
    n = serializers.IntegerField(help_text="scored targets")


class BandAccuracySerializer(AccuracySerializer):
    """A band's accuracy as served, and the raw TFT's beside it."""

    raw = AccuracySerializer(help_text="the TFT's own quantiles of the same TFT forecasts, before the blend with the "
                                       "last value and the interval calibration, on the same targets")


class WindowAccuracySerializer(AccuracySerializer):
    bands = serializers.DictField(child=BandAccuracySerializer(),
                                  help_text="horizon band (0-30m, 30m-2h, 2-8h) → accuracy as served, with the raw TFT's")


class MetricAccuracySerializer(serializers.Serializer):
    last_24h = WindowAccuracySerializer(help_text="forecasts made in the last 24 h (key: 24h)")
    last_7d = WindowAccuracySerializer(help_text="forecasts made in the last 7 days (key: 7d)")

    def get_fields(self):
        # The body's keys are "24h" and "7d", which are not Python names.
        fields = super().get_fields()
        return {"24h": fields.pop("last_24h"), "7d": fields.pop("last_7d")}


class ServerAccuracySerializer(serializers.Serializer):
    cpu_pct = MetricAccuracySerializer()
    mem_pct = MetricAccuracySerializer()
    disk_io_mb_s = MetricAccuracySerializer()
    latency_ms = MetricAccuracySerializer()


_NO_SCORES = {"mase": None, "naive_mase": None, "mase_vs_naive": None, "pinball": None, "coverage_80": None, "n": 0}
_WINDOW = {"mase": 0.82, "naive_mase": 1.05, "mase_vs_naive": 0.78, "pinball": 1.9, "coverage_80": 0.79, "n": 1152,
           "bands": {"0-30m": {"mase": 0.41, "naive_mase": 0.52, "mase_vs_naive": 0.79, "pinball": 0.8,
                               "coverage_80": 0.83, "n": 72,
                               "raw": {"mase": 0.47, "naive_mase": 0.52, "mase_vs_naive": 0.9, "pinball": 0.9,
                                       "coverage_80": 0.71, "n": 72}},
                     "30m-2h": {**_NO_SCORES, "raw": _NO_SCORES}, "2-8h": {**_NO_SCORES, "raw": _NO_SCORES}}}


class PredictionsServerApi(ReadApiView):
    """GET /predictions/<server> — one server's forecast, probabilities and alerts."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PredictionsServer"

        server = serializers.CharField()
        prediction = ServerPredictionSerializer()
        probabilities = ServerProbabilitiesSerializer()
        alerts = AlertSerializer(many=True)
        explanation = ExplanationSerializer(help_text="what drove the forecast, from the TFT itself")
        accuracy = ServerAccuracySerializer(help_text="live accuracy of this server's past forecasts, per metric")
        metadata = ServerMetadataSerializer()

    @extend_schema(
        summary="One server's forecast",
        parameters=[
            OpenApiParameter(
                "server", {"type": "string", "pattern": f"^{SERVER_NAME_PATTERN}$"}, OpenApiParameter.PATH,
                description="a server name (anything else is a 400)",
            )
        ],
        responses={
            200: OpenApiResponse(
                OutputSerializer,
                examples=[
                    OpenApiExample(
                        "ppdb001",
                        value={
                            "server": "ppdb001",
                            "prediction": dict.fromkeys(METRICS, _SERIES),
                            "probabilities": {"prob_30m": 0.02, "prob_8h": 0.11},
                            "alerts": [_ALERT],
                            "explanation": _EXPLANATION,
                            "accuracy": {metric: {"24h": _WINDOW, "7d": _WINDOW} for metric in METRICS},
                            "metadata": {**_METADATA, "method": "tft", "fallback_reason": None,
                                         "origin": "2025-10-13T16:30:00+00:00", "stale": False,
                                         "encoder_steps": 288, "state": "healthy"},
                        },
                    )
                ],
            ),
            400: OpenApiResponse(ErrorSerializer, description="Not a valid server name."),
            404: OpenApiResponse(
                ErrorSerializer,
                examples=[OpenApiExample("Unknown server", value={
                    "error": "not_found", "message": "no forecast for server 'ppdb999' in the current run"})],
            ),
            503: INSUFFICIENT_DATA,
        },
    )
    def get(self, request, server: str):
        if not SERVER_NAME_RE.match(server):
            return Response({"error": "invalid_request", "message": "server: not a valid server name"}, status=400)
        run = current_run()
        if run is None:
            return insufficient_data_response()
        body = server_forecast_json(run, server)
        if body is None:
            return Response(
                {"error": "not_found", "message": f"no forecast for server {server!r} in the current run"}, status=404
            )
        return _json(body)


class AlertsActiveApi(ReadApiView):
    """GET /alerts/active — open (active and acknowledged) alerts, most severe and soonest first."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AlertsActive"

        alerts = AlertSerializer(many=True)
        count = serializers.IntegerField()

    @extend_schema(
        summary="Open alerts",
        description="Active and acknowledged alerts, most severe and soonest first.",
        parameters=[
            OpenApiParameter(
                "server", {"type": "string", "pattern": f"^{SERVER_NAME_PATTERN}$"}, required=False,
                description="only this server's alerts (a valid server name; anything else, empty included, is a 400)",
            )
        ],
        responses={
            200: OpenApiResponse(
                OutputSerializer,
                examples=[OpenApiExample("One warning", value={"alerts": [_ALERT], "count": 1})],
            ),
            400: OpenApiResponse(ErrorSerializer, description="Not a valid server name."),
        },
    )
    def get(self, request):
        server = request.query_params.get("server")
        if server is not None and not SERVER_NAME_RE.match(server):
            return Response({"error": "invalid_request", "message": "server: not a valid server name"}, status=400)
        alerts = open_alerts_contract(server_name=server)
        return Response({"alerts": alerts, "count": len(alerts)})


# --- Maintenance windows (silences) ------------------------------------------------------------


SERVER_PATTERN_RE = re.compile(r"^[A-Za-z0-9._\-*?\[\]!]+$")
WINDOW_MAX_BACKDATE = timedelta(days=1)
WINDOW_MAX_AHEAD = timedelta(days=366)
# A comma-separated list of those (what the schema says; validate_servers normalises the spaces).
SERVERS_LIST_PATTERN = r"^\s*[A-Za-z0-9._\-*?\[\]!]+\s*(,\s*[A-Za-z0-9._\-*?\[\]!]+\s*)*$"


def _window_state(window, now) -> str:
    end = min(window.ends_at, window.ended_at) if window.ended_at else window.ends_at
    if end <= now:
        return "over"
    return "active" if window.starts_at <= now else "upcoming"


class MaintenanceWindowSerializer(serializers.Serializer):
    class Meta:
        ref_name = "MaintenanceWindow"

    id = serializers.IntegerField(source="pk")
    servers = serializers.CharField(help_text="server names or globs, comma-separated")
    metric = serializers.CharField(help_text="empty: every metric")
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True, help_text="set when ended early")
    reason = serializers.CharField()
    created_by = serializers.CharField(help_text="the API key's name (or admin user) that created it")
    created_at = serializers.DateTimeField()
    state = serializers.ChoiceField(choices=["active", "upcoming", "over"])


def _window_body(window, now) -> dict:
    return MaintenanceWindowSerializer({**{f: getattr(window, f) for f in (
        "pk", "servers", "metric", "starts_at", "ends_at", "ended_at", "reason", "created_by", "created_at")},
        "state": _window_state(window, now)}).data


class MaintenanceWindowsListApi(ReadApiView):
    """GET /alerts/windows — active and upcoming maintenance windows, soonest first."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MaintenanceWindows"

        windows = MaintenanceWindowSerializer(many=True)
        count = serializers.IntegerField()

    @extend_schema(summary="Maintenance windows", description="Active and upcoming windows (silences), soonest first.",
                   responses={200: OutputSerializer})
    def get(self, request):
        now = datetime.now(UTC)
        windows = [_window_body(w, now) for w in maintenance_windows_current(now=now)]
        return Response({"windows": windows, "count": len(windows)})


class MaintenanceWindowCreateApi(FeedApiView):
    """POST /alerts/windows/create — a maintenance window (needs a key that may feed: the write scope)."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "MaintenanceWindowCreate"

        servers = serializers.RegexField(SERVERS_LIST_PATTERN, max_length=500,
                                         help_text="server names or globs, comma-separated (db-*, web01)")
        metric = serializers.ChoiceField(choices=["", *METRICS], required=False, default="",
                                         help_text="only this metric's alerts (default: all)")
        starts_at = serializers.DateTimeField(required=False, help_text="default: now")
        ends_at = serializers.DateTimeField()
        reason = serializers.CharField(min_length=1, max_length=300)

        def validate_servers(self, value: str) -> str:
            patterns = [p.strip() for p in value.split(",") if p.strip()]
            bad = [p for p in patterns if not SERVER_PATTERN_RE.match(p)]
            if not patterns or bad:
                raise serializers.ValidationError(f"not a server name or glob: {bad[0] if bad else value!r}")
            return ",".join(patterns)

        def validate(self, attrs):
            now = datetime.now(UTC)
            attrs.setdefault("starts_at", now)
            if attrs["ends_at"] <= attrs["starts_at"]:
                raise serializers.ValidationError({"ends_at": "must be after starts_at"})
            if attrs["ends_at"] <= now:
                raise serializers.ValidationError({"ends_at": "is in the past"})
            # A window is planned maintenance, not a way to switch alerting off for good.
            if attrs["starts_at"] < now - WINDOW_MAX_BACKDATE:
                raise serializers.ValidationError({"starts_at": "more than a day in the past"})
            if attrs["ends_at"] > now + WINDOW_MAX_AHEAD:
                raise serializers.ValidationError({"ends_at": "more than a year ahead"})
            return attrs

    @extend_schema(
        summary="Create a maintenance window",
        description="No alert opens or is pushed for the covered servers (and metric) while it is on; an open "
        "alert is resolved once; its buckets are left out of live scoring, calibration and training data.",
        request=InputSerializer,
        responses={201: MaintenanceWindowSerializer, 400: OpenApiResponse(ErrorSerializer, description="Invalid window.")},
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        now = datetime.now(UTC)
        window = maintenance_window_create(**data.validated_data, created_by=getattr(request, "api_key_name", "api"),
                                           now=now)
        return Response(_window_body(window, now), status=201)


class MaintenanceWindowEndApi(FeedApiView):
    """POST /alerts/windows/<id>/end — end a window now (cancels an upcoming one)."""

    @extend_schema(
        summary="End a maintenance window",
        request=None,
        parameters=[OpenApiParameter("window_id", int, OpenApiParameter.PATH, description="the window's id")],
        responses={200: MaintenanceWindowSerializer, 400: OpenApiResponse(ErrorSerializer, description="Not an id."),
                   404: OpenApiResponse(ErrorSerializer, description="No such window.")},
    )
    def post(self, request, window_id: str):
        if not re.fullmatch(r"-?[0-9]+", window_id):  # an integer, as the schema says
            raise ValidationError({"window_id": "a window's id (a whole number)"}, code="invalid_request")
        window_id = int(window_id)
        if not 0 < window_id < 2**63:  # no such row (and beyond the id column's range)
            return Response({"error": "not_found", "message": f"no maintenance window {window_id}"}, status=404)
        now = datetime.now(UTC)
        window = maintenance_window_end(window_id=window_id, now=now)
        if window is None:
            return Response({"error": "not_found", "message": f"no maintenance window {window_id}"}, status=404)
        return Response(_window_body(window, now))
# --- Incident probabilities, scored live (issue 22) ---------------------------------------------------


class ReliabilityBinSerializer(serializers.Serializer):
    bin = serializers.CharField(help_text="served probability range, e.g. 0.2-0.3")
    n = serializers.IntegerField(help_text="outcomes whose served probability fell in the bin")
    mean_prob = serializers.FloatField(help_text="their mean served probability")
    frequency = serializers.FloatField(help_text="the share of them in which an incident started")


class ProbabilityMapSerializer(serializers.Serializer):
    a = serializers.FloatField(help_text="served = σ(a + b · logit(model's probability)); 0 and 1 = identity")
    b = serializers.FloatField()
    outcomes = serializers.FloatField(help_text="outcomes in the fleet map (decayed by TFT_PROBABILITY_HALF_LIFE_HOURS)")
    profiles = serializers.ListField(child=serializers.CharField(), help_text="profiles with a map of their own")


class ProbabilityWindowScoresSerializer(serializers.Serializer):
    """Scores of the served probabilities against what happened (engine.incidents): null with no outcomes."""

    n = serializers.IntegerField(help_text="resolved outcomes (server × origin)")
    events = serializers.IntegerField(help_text="outcomes in which an incident started")
    base_rate = serializers.FloatField(allow_null=True, help_text="the fleet's own observed incident rate")
    mean_prob = serializers.FloatField(allow_null=True, help_text="mean served probability")
    brier = serializers.FloatField(allow_null=True, help_text="mean squared error of the served probabilities")
    brier_climatology = serializers.FloatField(allow_null=True, help_text="Brier of always saying base_rate")
    skill = serializers.FloatField(allow_null=True, help_text="1 − brier / brier_climatology (> 0: informative)")
    auc = serializers.FloatField(allow_null=True, help_text="P(an incident's probability > a quiet one's)")
    reliability = ReliabilityBinSerializer(many=True, help_text="10 equal bins of the served probability")
    pending = serializers.IntegerField(help_text="served probabilities whose window has not passed yet")
    map = ProbabilityMapSerializer(help_text="the live recalibration map in force for the fleet")


class ProbabilityReliabilitySerializer(serializers.Serializer):
    days = serializers.IntegerField(help_text="outcomes of forecasts made in the last N days (TFT_PROBABILITY_SCORE_DAYS)")
    windows = serializers.DictField(child=ProbabilityWindowScoresSerializer(), help_text="30m, 8h → scores")


_PROBABILITY_WINDOW = {
    "n": 5760, "events": 58, "base_rate": 0.0101, "mean_prob": 0.012, "brier": 0.0094, "brier_climatology": 0.01,
    "skill": 0.06, "auc": 0.81, "reliability": [{"bin": "0.0-0.1", "n": 5702, "mean_prob": 0.011, "frequency": 0.009},
                                                {"bin": "0.2-0.3", "n": 58, "mean_prob": 0.21, "frequency": 0.19}],
    "pending": 2000, "map": {"a": -1.9, "b": 0.93, "outcomes": 5760.0, "profiles": []},
}


class ProbabilitiesReliabilityApi(ReadApiView):
    """GET /probabilities/reliability — how the served incident probabilities fared: Brier, skill vs the
    fleet's own rate, AUC and a 10-bin reliability table per window, and the live map in force."""

    throttle_classes = [ReadRateThrottle, HeavyReadRateThrottle]  # a 7-day GROUP BY: a heavy read

    @extend_schema(
        summary="Incident probabilities scored live",
        description="Of the forecasts we gave 20 %, how many had an incident: each served prob_30m / prob_8h is "
        "kept and, once its window has passed, scored against whether an incident (a critical limit reached for "
        "TFT_INCIDENT_MIN_BUCKETS buckets, or a bucket in an incident state) started in it.",
        responses={200: OpenApiResponse(ProbabilityReliabilitySerializer, examples=[OpenApiExample(
            "A quiet fleet after a day", value={"days": 7, "windows": {"30m": _PROBABILITY_WINDOW, "8h": _PROBABILITY_WINDOW}})])},
    )  # fmt: skip
    def get(self, request):
        run = current_run()
        return Response(read_cached(name="probabilities:reliability", run_id=run.pk if run else None,
                                    render=probability_reliability))  # fmt: skip
