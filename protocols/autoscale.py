"""GET /autoscale/v1/peak — one number for an autoscaler: the highest forecast quantile of a metric
within the next N minutes, for one server or a group (a server family, or every server), in the
shape KEDA's `metrics-api` scaler reads (`valueLocation: value`). README "Observability protocols"
has the ScaledObject."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from access.throttles import ReadRateThrottle
from ingest.contract import METRICS, PROFILES
from ingest.validation import SERVER_NAME_RE
from protocols.auth import ProtocolReadKey
from protocols.forecasts import QUANTILE_KEYS, current_forecasts, forecast_server_names


def forecast_peak(*, forecasts, metric: str, quantile: str, minutes: int, aggregate: str, now: datetime) -> float:
    """Each server's highest `quantile` over the steps starting before now + minutes, then aggregated."""
    step = timedelta(minutes=settings.TFT_STEP_MINUTES)
    until = now + timedelta(minutes=minutes)
    peaks = []
    for forecast in forecasts:
        values = forecast.payload.get(metric, {}).get(QUANTILE_KEYS[quantile], [])
        window = [
            v
            for i, v in enumerate(values)
            if forecast.origin + i * step < until and forecast.origin + (i + 1) * step > now
        ]
        if window:
            peaks.append(max(window))
    if not peaks:
        return 0.0
    if aggregate == "sum":
        return sum(peaks)
    if aggregate == "mean":
        return sum(peaks) / len(peaks)
    return max(peaks)


class AutoscalePeakApi(APIView):
    """GET /autoscale/v1/peak?server=…|profile=…&metric=cpu_pct&minutes=30&quantile=0.9&aggregate=max"""

    permission_classes = [ProtocolReadKey]
    throttle_classes = [ReadRateThrottle]

    class InputSerializer(serializers.Serializer):
        server = serializers.RegexField(
            SERVER_NAME_RE.pattern, max_length=64, required=False, help_text="one server; else the group"
        )
        profile = serializers.ChoiceField(
            choices=PROFILES, required=False, help_text="the group: one server family; neither: every server"
        )
        metric = serializers.ChoiceField(choices=METRICS, default="cpu_pct")
        minutes = serializers.IntegerField(min_value=5, max_value=480, default=30)
        quantile = serializers.ChoiceField(choices=tuple(QUANTILE_KEYS), default="0.9")
        aggregate = serializers.ChoiceField(
            choices=("max", "sum", "mean"), default="max", help_text="how the group's per-server peaks combine"
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "AutoscalePeak"

        value = serializers.FloatField(help_text="the number to scale on (0 when nothing is forecast)")
        metric = serializers.CharField()
        quantile = serializers.CharField()
        minutes = serializers.IntegerField()
        aggregate = serializers.CharField()
        servers = serializers.IntegerField(help_text="servers whose forecasts went into the value")

    @extend_schema(
        summary="Autoscaler hook (KEDA metrics-api)",
        parameters=[InputSerializer],
        responses={200: OutputSerializer},
        auth=[{"ApiKeyAuth": []}],
    )
    def get(self, request):
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if "server" in data:
            names = [data["server"]]
        else:
            names = [n for n, p in forecast_server_names() if data.get("profile") in (None, p)]
        forecasts = current_forecasts(server_names=names)
        if "server" in data and not forecasts:
            raise NotFound(f"no current forecast for {data['server']}")
        value = forecast_peak(
            forecasts=forecasts,
            metric=data["metric"],
            quantile=data["quantile"],
            minutes=data["minutes"],
            aggregate=data["aggregate"],
            now=datetime.now(UTC),
        )
        body = {
            "value": value,
            "metric": data["metric"],
            "quantile": data["quantile"],
            "minutes": data["minutes"],
            "aggregate": data["aggregate"],
            "servers": len(forecasts),
        }
        return Response(self.OutputSerializer(body).data)
