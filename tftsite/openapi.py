"""OpenAPI documentation of the contract's endpoints (GET /api/schema/, /api/docs/, /api/redoc/).

The views return hand-spliced JSON for speed, so drf-spectacular cannot infer their bodies: the
serializers here exist only to describe them, and the examples are the contract's
(../shared/seed/PRODUCTION_INTEGRATION_GUIDE.md) extended with the fields this service adds. The
views apply these with `@extend_schema(**FEED_DATA)` and so on; nothing here runs per request.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

from ingest.contract import VALID_STATES

API_KEY = [{"ApiKeyAuth": []}]


# --- Shapes ---------------------------------------------------------------------------------------


class RecordSerializer(serializers.Serializer):
    timestamp = serializers.DateTimeField(help_text="ISO 8601; no offset means UTC. At most 5 minutes ahead of our clock.")
    server_name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$", help_text="e.g. ppdb001")
    cpu_pct = serializers.FloatField(min_value=0, max_value=100)
    mem_pct = serializers.FloatField(min_value=0, max_value=100)
    disk_io_mb_s = serializers.FloatField(min_value=0)
    latency_ms = serializers.FloatField(min_value=0)
    state = serializers.ChoiceField(choices=VALID_STATES)


class FeedBodySerializer(serializers.Serializer):
    records = RecordSerializer(many=True, help_text="1 to TFT_MAX_BATCH_RECORDS (10,000) records")


class ErrorItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True, help_text="the record's position in `records`")
    field = serializers.CharField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    status = serializers.CharField(required=False)
    error = serializers.CharField(help_text="machine-readable code, e.g. invalid_records, missing_api_key")
    message = serializers.CharField()
    errors = ErrorItemSerializer(many=True, required=False)


class MetricForecastSerializer(serializers.Serializer):
    p10 = serializers.ListField(child=serializers.FloatField(), help_text="96 values, 5-minute steps (8 h)")
    p50 = serializers.ListField(child=serializers.FloatField())
    p90 = serializers.ListField(child=serializers.FloatField())
    current = serializers.FloatField()
    trend = serializers.FloatField(help_text="slope of p50 per step")


class ServerPredictionSerializer(serializers.Serializer):
    cpu_pct = MetricForecastSerializer()
    mem_pct = MetricForecastSerializer()
    disk_io_mb_s = MetricForecastSerializer()
    latency_ms = MetricForecastSerializer()


class AlertSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    server = serializers.CharField()
    metric = serializers.CharField()
    severity = serializers.ChoiceField(choices=["warning", "critical"])
    state = serializers.ChoiceField(choices=["active", "acknowledged"])
    rule = serializers.CharField()
    predicted_value = serializers.FloatField()
    threshold = serializers.FloatField()
    steps_ahead = serializers.IntegerField()
    minutes_ahead = serializers.IntegerField()
    message = serializers.CharField()
    opened_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)


class EnvironmentSerializer(serializers.Serializer):
    prob_30m = serializers.FloatField()
    prob_8h = serializers.FloatField()
    high_risk_servers = serializers.IntegerField()
    total_servers = serializers.IntegerField()
    fleet_health = serializers.ChoiceField(choices=["healthy", "warning", "critical"])


class MetadataSerializer(serializers.Serializer):
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


class PredictionsCurrentSerializer(serializers.Serializer):
    predictions = serializers.DictField(child=ServerPredictionSerializer(), help_text="server name → forecast")
    alerts = AlertSerializer(many=True)
    environment = EnvironmentSerializer()
    metadata = MetadataSerializer()


class PredictionsServerSerializer(serializers.Serializer):
    server = serializers.CharField()
    prediction = ServerPredictionSerializer()
    probabilities = inline_serializer(
        "Probabilities", {"prob_30m": serializers.FloatField(), "prob_8h": serializers.FloatField()}
    )
    alerts = AlertSerializer(many=True)
    metadata = MetadataSerializer()


class AlertsActiveSerializer(serializers.Serializer):
    alerts = AlertSerializer(many=True)
    count = serializers.IntegerField()


class InsufficientDataSerializer(serializers.Serializer):
    error = serializers.CharField()
    message = serializers.CharField()
    servers_ready = serializers.IntegerField()
    servers_tracked = serializers.IntegerField()
    required_size = serializers.IntegerField()


# --- Examples (the contract's, with our additional fields) ---------------------------------------

_RECORD_DB1 = {
    "timestamp": "2025-10-13T16:00:00",
    "server_name": "ppdb001",
    "cpu_pct": 45.2,
    "mem_pct": 67.8,
    "disk_io_mb_s": 123.4,
    "latency_ms": 12.5,
    "state": "healthy",
}
_RECORD_DB2 = {**_RECORD_DB1, "server_name": "ppdb002", "cpu_pct": 52.1, "mem_pct": 71.3, "disk_io_mb_s": 98.7,
               "latency_ms": 15.8}
_SERIES = {"p50": [45.3, 46.1, 47.2, "…96 values"], "p10": [42.1, 43.0, 44.2, "…"], "p90": [48.5, 49.2, 50.3, "…"],
           "current": 45.2, "trend": 0.02}
_ALERT = {
    "id": 17,
    "server": "ppdb001",
    "metric": "cpu_pct",
    "severity": "warning",
    "state": "active",
    "rule": "p50_warning",
    "predicted_value": 92.3,
    "threshold": 90.0,
    "steps_ahead": 12,
    "minutes_ahead": 60,
    "message": "ppdb001: cpu_pct predicted to reach 92.3",
    "opened_at": "2025-10-13T16:30:15Z",
    "updated_at": "2025-10-13T16:31:15Z",
    "acknowledged_at": None,
}
_METADATA = {
    "model_type": "TFT",
    "prediction_time": "2025-10-13T16:30:15.123456+00:00",
    "horizon_steps": 96,
    "step_minutes": 5,
    "device": "cuda:0",
    "model_version": "tft_model_20251013T120000Z",
    "run_id": 4211,
    "age_seconds": 12.4,
    "servers": 20,
    "tft_servers": 20,
    "fallback_servers": 0,
}
_ENVIRONMENT = {"prob_30m": 0.15, "prob_8h": 0.42, "high_risk_servers": 3, "total_servers": 20, "fleet_health": "warning"}
_INSUFFICIENT = OpenApiResponse(
    InsufficientDataSerializer,
    description="No complete prediction run yet (warmup); Retry-After says when to ask again.",
    examples=[
        OpenApiExample(
            "Warming up",
            value={
                "error": "insufficient_data",
                "message": "No server has finished warmup: 0/20 ready (150 records each; the least-fed server has 42)",
                "servers_ready": 0,
                "servers_tracked": 20,
                "required_size": 150,
            },
        )
    ],
)
_KEY_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No X-API-Key header where a key is required."),
    403: OpenApiResponse(ErrorSerializer, description="The key does not match, or none is configured."),
}


# --- Per endpoint: keyword arguments for extend_schema -------------------------------------------

FEED_DATA = {
    "summary": "Submit server metrics",
    "description": "Stores a batch atomically and idempotently (a record whose server and timestamp is "
    "already stored counts as a duplicate). Any invalid record rejects the whole batch with every problem "
    "listed. Send all servers in one batch, every 5 seconds.",
    "request": FeedBodySerializer,
    "auth": API_KEY,
    "examples": [
        OpenApiExample("Two servers (contract)", value={"records": [_RECORD_DB1, _RECORD_DB2]}, request_only=True),
        OpenApiExample(
            "Critical incident",
            value={"records": [{"timestamp": "2025-10-13T16:05:30", "server_name": "ppweb003", "cpu_pct": 98.7,
                                "mem_pct": 94.2, "disk_io_mb_s": 567.8, "latency_ms": 234.5,
                                "state": "critical_issue"}]},
            request_only=True,
        ),
    ],
    "responses": {
        200: OpenApiResponse(
            inline_serializer(
                "FeedAccepted",
                {
                    "status": serializers.CharField(),
                    "tick": serializers.IntegerField(),
                    "window_size": serializers.IntegerField(),
                    "servers_tracked": serializers.IntegerField(),
                    "servers_ready": serializers.IntegerField(),
                    "warmup_complete": serializers.BooleanField(),
                    "accepted": serializers.IntegerField(),
                    "duplicates": serializers.IntegerField(),
                },
            ),
            examples=[
                OpenApiExample(
                    "Accepted",
                    value={"status": "accepted", "tick": 42, "window_size": 840, "servers_tracked": 20,
                           "servers_ready": 20, "warmup_complete": True, "accepted": 2, "duplicates": 0},
                )
            ],
        ),
        400: OpenApiResponse(
            ErrorSerializer,
            description="The body or some records break the contract; nothing was stored.",
            examples=[
                OpenApiExample(
                    "Invalid records",
                    value={"status": "rejected", "error": "invalid_records",
                           "message": "1 of 2 records break the data contract; nothing was stored",
                           "errors": [{"index": 1, "field": "cpu_pct", "message": "must be between 0 and 100"}]},
                )
            ],
        ),
        413: OpenApiResponse(ErrorSerializer, description="Too many records or too large a body."),
        **_KEY_ERRORS,
        503: OpenApiResponse(ErrorSerializer, description="Database unavailable; retry after Retry-After."),
    },
}

STATUS = {
    "summary": "Warmup, counters and prediction status",
    "parameters": [OpenApiParameter("servers", str, description="1 adds per-server readiness", required=False)],
    "responses": {
        200: OpenApiResponse(
            inline_serializer(
                "Status",
                {
                    "running": serializers.BooleanField(),
                    "tick_count": serializers.IntegerField(),
                    "window_size": serializers.IntegerField(),
                    "servers_tracked": serializers.IntegerField(),
                    "servers_ready": serializers.IntegerField(),
                    "step_minutes": serializers.IntegerField(),
                    "warmup": serializers.DictField(),
                    "model": serializers.DictField(),
                    "predictions": serializers.DictField(allow_null=True),
                },
            ),
            examples=[
                OpenApiExample(
                    "Warmed up (contract)",
                    value={"running": True, "tick_count": 305, "window_size": 6000, "servers_tracked": 20,
                           "servers_ready": 20, "step_minutes": 5,
                           "warmup": {"is_warmed_up": True, "progress_percent": 100, "threshold": 150,
                                      "current_size": 289, "required_size": 150,
                                      "message": "Model ready - using TFT predictions"},
                           "model": {"active_version": "tft_model_20251013T120000Z", "metrics": {}},
                           "predictions": {"run_id": 4211, "age_seconds": 12.4, "stale": False,
                                           "tft_servers": 20, "fallback_servers": 0}},
                )
            ],
        )
    },
}

HEALTH = {
    "summary": "Health check for load balancers",
    "responses": {
        200: OpenApiResponse(
            inline_serializer(
                "Health",
                {"status": serializers.CharField(), "service": serializers.CharField(),
                 "running": serializers.BooleanField(), "checks": serializers.DictField()},
            ),
            examples=[
                OpenApiExample(
                    "Healthy",
                    value={"status": "healthy", "service": "tftsite", "running": True,
                           "checks": {"database": {"ok": True, "latency_ms": 0.41, "vendor": "postgresql"}}},
                )
            ],
        ),
        503: OpenApiResponse(
            description="A check failed; `failed` names it.",
            examples=[
                OpenApiExample(
                    "Database down",
                    value={"status": "unhealthy", "service": "tftsite", "running": True,
                           "checks": {"database": {"ok": False, "error": "OperationalError: connection refused"}},
                           "failed": ["database"]},
                )
            ],
        ),
    },
}

PREDICTIONS_CURRENT = {
    "summary": "Latest forecasts for all servers",
    "description": "The latest complete prediction run: per server and metric, 96 five-minute steps (8 h) "
    "of p10/p50/p90, plus open alerts, the fleet environment and run metadata.",
    "responses": {
        200: OpenApiResponse(
            PredictionsCurrentSerializer,
            examples=[
                OpenApiExample(
                    "Contract example",
                    value={
                        "predictions": {"ppdb001": {"cpu_pct": _SERIES, "mem_pct": _SERIES, "disk_io_mb_s": _SERIES,
                                                    "latency_ms": _SERIES}},
                        "alerts": [_ALERT],
                        "environment": _ENVIRONMENT,
                        "metadata": {**_METADATA, "methods": {"ppdb001": "tft"}, "fallback_reasons": {}},
                    },
                )
            ],
        ),
        503: _INSUFFICIENT,
    },
}

PREDICTIONS_SERVER = {
    "summary": "One server's forecast",
    "responses": {
        200: OpenApiResponse(
            PredictionsServerSerializer,
            examples=[
                OpenApiExample(
                    "ppdb001",
                    value={
                        "server": "ppdb001",
                        "prediction": {"cpu_pct": _SERIES, "mem_pct": _SERIES, "disk_io_mb_s": _SERIES,
                                       "latency_ms": _SERIES},
                        "probabilities": {"prob_30m": 0.02, "prob_8h": 0.11},
                        "alerts": [_ALERT],
                        "metadata": {**_METADATA, "method": "tft", "fallback_reason": None,
                                     "origin": "2025-10-13T16:30:00+00:00", "encoder_steps": 288,
                                     "state": "healthy"},
                    },
                )
            ],
        ),
        404: OpenApiResponse(
            ErrorSerializer,
            examples=[OpenApiExample("Unknown server", value={
                "error": "not_found", "message": "no forecast for server 'ppdb999' in the current run"})],
        ),
        503: _INSUFFICIENT,
    },
}

ALERTS_ACTIVE = {
    "summary": "Open alerts",
    "description": "Active and acknowledged alerts, most severe and soonest first.",
    "parameters": [OpenApiParameter("server", str, description="only this server's alerts", required=False)],
    "responses": {
        200: OpenApiResponse(
            AlertsActiveSerializer,
            examples=[OpenApiExample("One warning", value={"alerts": [_ALERT], "count": 1})],
        )
    },
}


def strip_trailing_slashes(result, generator, request, public):
    """drf-spectacular postprocessing hook: the contract's paths have no trailing slash (the routes
    accept both; `/?$` in a re_path renders as a trailing slash)."""
    result["paths"] = {(path.rstrip("/") or "/"): item for path, item in result.get("paths", {}).items()}
    return result
