"""Read API over stored runs: it never runs the model."""

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from forecasting.selectors import (
    current_run,
    open_alerts_contract,
    predictions_current_json,
    server_forecast_json,
)
from ingest.auth import ReadApiKey
from ingest.selectors import fleet_readiness
from ingest.throttle import ReadRateThrottle
from ingest.validation import SERVER_NAME_RE
from tftsite import openapi


def _json(body: str, status: int = 200) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")


def _insufficient_data() -> Response:
    readiness = fleet_readiness()
    threshold = settings.TFT_WARMUP_RECORDS
    if readiness.ready == 0:
        message = (
            f"No server has finished warmup: {readiness.ready}/{readiness.tracked} ready "
            f"({threshold} records each; the least-fed server has {readiness.min_records})"
        )
    else:
        message = f"{readiness.ready} servers are ready; waiting for the first prediction run"
    return Response(
        {"error": "insufficient_data", "message": message, "servers_ready": readiness.ready,
         "servers_tracked": readiness.tracked, "required_size": threshold},
        status=503,
        headers={"Retry-After": str(settings.TFT_PREDICTION_INTERVAL_SECONDS)},
    )


class ReadApi(APIView):
    permission_classes = [ReadApiKey]
    throttle_classes = [ReadRateThrottle]


class PredictionsCurrentApi(ReadApi):
    """GET /predictions/current — the latest complete run in the contract's shape."""

    @extend_schema(**openapi.PREDICTIONS_CURRENT)
    def get(self, request):
        run = current_run()
        if run is None or run.servers == 0:
            return _insufficient_data()
        return _json(predictions_current_json(run))


class PredictionsServerApi(ReadApi):
    """GET /predictions/<server> — one server's forecast, probabilities and alerts."""

    @extend_schema(**openapi.PREDICTIONS_SERVER)
    def get(self, request, server: str):
        run = current_run()
        if run is None:
            return _insufficient_data()
        body = server_forecast_json(run, server)
        if body is None:
            return Response(
                {"error": "not_found", "message": f"no forecast for server {server!r} in the current run"}, status=404
            )
        return _json(body)


class AlertsActiveApi(ReadApi):
    """GET /alerts/active — open (active and acknowledged) alerts, most severe and soonest first."""

    @extend_schema(**openapi.ALERTS_ACTIVE)
    def get(self, request):
        server = request.query_params.get("server")
        if server is not None and not SERVER_NAME_RE.match(server):
            return Response({"error": "invalid_request", "message": "server: not a valid server name"}, status=400)
        alerts = open_alerts_contract(server_name=server)
        return Response({"alerts": alerts, "count": len(alerts)})
