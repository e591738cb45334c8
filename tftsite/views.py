"""Views that belong to the site rather than one app: GET /status (reads both apps) and the favicon."""

from functools import cache
from pathlib import Path

from django.http import HttpResponse
from django.views.decorators.http import require_safe
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from access.read_limits import HeavyReadRateThrottle, read_cached
from access.throttles import ReadRateThrottle
from access.views import ReadApiView
from forecasting.api import AccuracySerializer, MetricAccuracySerializer, ProbabilityReliabilitySerializer
from forecasting.runs.selectors import current_run
from tftsite.status import status_body

_FLEET_ACCURACY = {"mase": 0.8, "naive_mase": 1.0, "mase_vs_naive": 0.8, "pinball": None, "coverage_80": 0.79,
                   "n": 23040}
_FLEET_BANDS = {"bands": {"0-30m": {"mase_vs_naive": 0.95, "n": 11520, "raw": {"mase_vs_naive": 1.1, "n": 11520}}},
                "raw_model_version": "tft_model_20251013T120000Z"}
FAVICON = Path(__file__).resolve().parent / "assets" / "favicon.ico"
# Browsers ask for /favicon.ico on every page without a <link rel=icon>; a month of caching keeps
# those requests off the server, and a changed icon still shows up within that time.
FAVICON_MAX_AGE_SECONDS = 30 * 24 * 3600


class StatusWarmupSerializer(serializers.Serializer):
    is_warmed_up = serializers.BooleanField()
    progress_percent = serializers.IntegerField(min_value=0, max_value=100)
    threshold = serializers.IntegerField(help_text="records a server needs before it is forecast")
    current_size = serializers.IntegerField(help_text="records of the least-fed feeding server")
    required_size = serializers.IntegerField()
    message = serializers.CharField()


class StatusTrainingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["train", "compare"])
    status = serializers.ChoiceField(choices=["running", "complete", "failed"])
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    decision = serializers.CharField(allow_null=True, help_text="promoted, candidate or compared")
    reason = serializers.CharField(allow_null=True, help_text="the decision's figures, or the failure")


class StatusModelSerializer(serializers.Serializer):
    active_version = serializers.CharField(allow_null=True)
    metrics = serializers.DictField(required=False, help_text="training and validation metrics; only with ?model=1")
    trained_at = serializers.DateTimeField(allow_null=True, help_text="when the active model was trained")
    promoted_because = serializers.CharField(
        allow_null=True, help_text="why it is active: its training run's decision, an operator, or newest folder"
    )
    last_training = StatusTrainingSerializer(allow_null=True, help_text="the latest training or comparison run")


class StatusPredictionsSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    finished_at = serializers.DateTimeField()
    age_seconds = serializers.FloatField()
    stale = serializers.BooleanField(help_text="the run is older than three prediction intervals")
    duration_seconds = serializers.FloatField()
    durations = serializers.DictField(child=serializers.FloatField(), help_text="phase → seconds")
    model_version = serializers.CharField(allow_null=True)
    device = serializers.CharField()
    servers = serializers.IntegerField()
    tft_servers = serializers.IntegerField()
    fallback_servers = serializers.IntegerField()
    stale_servers = serializers.IntegerField(
        help_text="forecasts whose origin is older than TFT_STALE_AFTER_MINUTES at the run's start"
    )
    fallback_rate = serializers.FloatField()
    fallback_reasons = serializers.DictField(child=serializers.IntegerField(), help_text="reason → servers")
    fleet_health = serializers.ChoiceField(choices=["healthy", "warning", "critical"], allow_null=True)


class StatusLastAttemptSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["running", "complete", "failed", "expired"])
    started_at = serializers.DateTimeField()
    error = serializers.CharField(allow_null=True)


class ServerReadinessSerializer(serializers.Serializer):
    server = serializers.CharField()
    profile = serializers.CharField()
    records = serializers.IntegerField()
    ready = serializers.BooleanField()
    progress_percent = serializers.IntegerField(min_value=0, max_value=100)
    silent = serializers.BooleanField(help_text="no batch for TFT_SERVER_SILENT_AFTER_MINUTES: counted out of warmup")
    first_seen = serializers.DateTimeField(allow_null=True)
    last_seen = serializers.DateTimeField(allow_null=True)
    last_received_at = serializers.DateTimeField(allow_null=True)


class RatioSerializer(serializers.Serializer):
    mase_vs_naive = serializers.FloatField(allow_null=True, help_text="MAE / naive MAE on the same targets (< 1: better)")
    n = serializers.IntegerField(help_text="scored targets")


class FleetBandRatioSerializer(RatioSerializer):
    """A band's ratio to naive as served, and the raw TFT's beside it."""

    raw = RatioSerializer(help_text="the active model version's own quantiles (raw_model_version), before the blend "
                                    "with the last value and the interval calibration, on the same targets")


class FleetWindowAccuracySerializer(AccuracySerializer):
    metrics = serializers.DictField(child=AccuracySerializer(), help_text="metric → accuracy")
    bands = serializers.DictField(child=FleetBandRatioSerializer(),
                                  help_text="horizon band (0-30m, 30m-2h, 2-8h) → ratio to naive, all metrics: as "
                                            "served (every model version that served), and the raw TFT's")
    raw_model_version = serializers.CharField(allow_null=True,
                                              help_text="the model version the raw figures describe (the active one)")


class StatusAccuracySerializer(MetricAccuracySerializer):
    """The fleet's live forecast accuracy; all-metric figures are ratios of sums, pinball is per metric."""

    last_24h = FleetWindowAccuracySerializer(help_text="forecasts made in the last 24 h (key: 24h)")
    last_7d = FleetWindowAccuracySerializer(help_text="forecasts made in the last 7 days (key: 7d)")


class StatusApi(ReadApiView):
    """GET /status — warmup and counters in the contract's shape, plus the current run and model."""

    throttle_classes = [ReadRateThrottle, HeavyReadRateThrottle]  # a 7-day score sum: a heavy read

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Status"

        running = serializers.BooleanField()
        tick_count = serializers.IntegerField(help_text="accepted batches")
        window_size = serializers.IntegerField(help_text="raw records held")
        servers_tracked = serializers.IntegerField(help_text="servers feeding (silent ones are not counted)")
        servers_ready = serializers.IntegerField(help_text="feeding servers past warmup")
        servers_silent = serializers.IntegerField(
            help_text="servers with no batch for silent_after_minutes: counted out of warmup and servers_tracked "
            "until they feed again"
        )
        silent_after_minutes = serializers.IntegerField(help_text="TFT_SERVER_SILENT_AFTER_MINUTES")
        step_minutes = serializers.IntegerField()
        warmup = StatusWarmupSerializer()
        model = StatusModelSerializer()
        predictions = StatusPredictionsSerializer(allow_null=True, help_text="the current run; null before the first")
        last_attempt = StatusLastAttemptSerializer(required=False, help_text="the newest run, whatever its status")
        servers = ServerReadinessSerializer(many=True, required=False, help_text="only with ?servers=1")
        accuracy = StatusAccuracySerializer(help_text="live accuracy of the fleet's scored forecasts")
        probabilities = ProbabilityReliabilitySerializer(
            help_text="the served incident probabilities scored live (as GET /probabilities/reliability)")

    @extend_schema(
        summary="Warmup, counters and prediction status",
        parameters=[
            OpenApiParameter("servers", str, description="1 adds per-server readiness", required=False),
            OpenApiParameter("model", str, description="1 adds the active model's training metrics", required=False),
        ],
        responses={
            200: OpenApiResponse(
                OutputSerializer,
                examples=[
                    OpenApiExample(
                        "Warmed up (contract)",
                        value={"running": True, "tick_count": 305, "window_size": 6000, "servers_tracked": 20,
                               "servers_ready": 20, "servers_silent": 0, "silent_after_minutes": 180, "step_minutes": 5,
                               "warmup": {"is_warmed_up": True, "progress_percent": 100, "threshold": 150,
                                          "current_size": 289, "required_size": 150,
                                          "message": "Model ready - using TFT predictions"},
                               "model": {"active_version": "tft_model_20251013T120000Z"},
                               "predictions": {"run_id": 4211, "finished_at": "2025-10-13T16:30:15+00:00",
                                               "age_seconds": 12.4, "stale": False, "duration_seconds": 1.8,
                                               "durations": {"forecast": 1.2}, "model_version":
                                               "tft_model_20251013T120000Z", "device": "cuda:0", "servers": 20,
                                               "tft_servers": 20, "fallback_servers": 0, "stale_servers": 0,
                                               "fallback_rate": 0.0, "fallback_reasons": {},
                                               "fleet_health": "healthy"},
                               "last_attempt": {"status": "complete", "started_at": "2025-10-13T16:30:13+00:00",
                                                "error": None},
                               "accuracy": {window: {**_FLEET_ACCURACY, "metrics": {"cpu_pct": _FLEET_ACCURACY}, **_FLEET_BANDS}
                                            for window in ("24h", "7d")},
                               "probabilities": {"days": 7, "windows": {}}},
                    )
                ],
            )
        },
    )
    def get(self, request):
        servers, model = self.flag("servers"), self.flag("model")
        run = current_run()
        body = read_cached(name=f"status:{servers:d}{model:d}", run_id=run.pk if run else None,
                           render=lambda: status_body(with_servers=servers, with_model=model))
        return Response(body)


@cache
def _favicon_bytes() -> bytes:
    return FAVICON.read_bytes()


@require_safe
def favicon_view(request):
    """GET /favicon.ico — the site's icon (a forecast fan), so browsers stop logging 404s."""
    response = HttpResponse(_favicon_bytes(), content_type="image/x-icon")
    response["Cache-Control"] = f"public, max-age={FAVICON_MAX_AGE_SECONDS}"
    return response
