"""Feed, status and health endpoints. Views validate and call services; nothing else."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from ingest.auth import FeedApiKey, ReadApiKey
from ingest.middleware import RETRY_AFTER_SECONDS
from ingest.selectors import counters_totals, database_check, fleet_readiness, server_readiness_list
from ingest.services import records_ingest
from ingest.throttle import FeedRateThrottle, ReadRateThrottle
from ingest.validation import BatchRejectedError, validate_feed_body
from tftsite import openapi

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    """Every API error is JSON with an `error` code and a human `message`."""
    if isinstance(exc, BatchRejectedError):
        return Response(exc.body(), status=exc.status)
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}".strip()[:300]})
        return Response(
            {
                "status": "unavailable",
                "error": "database_unavailable",
                "message": "the database is unavailable; nothing from this request was stored — retry later",
            },
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, APIException):
        response = drf_exception_handler(exc, context)
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid_request"
        response.data = {"status": "rejected", "error": code, "message": _flatten(exc.detail)}
        return response
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(
            {
                "status": "error",
                "error": "database_error",
                "message": "the database rejected the request; nothing from this request was stored",
            },
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    logger.exception("unhandled error")
    return Response(
        {
            "status": "error",
            "error": "internal_error",
            "message": "internal error on our side; nothing from this request was stored",
        },
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _flatten(detail) -> str:
    if isinstance(detail, list):
        return "; ".join(_flatten(d) for d in detail)
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    return str(detail)


class FeedDataApi(APIView):
    """POST /feed/data — the contract's feed endpoint."""

    permission_classes = [FeedApiKey]
    throttle_classes = [FeedRateThrottle]

    class OutputSerializer(serializers.Serializer):
        status = serializers.CharField()
        tick = serializers.IntegerField(help_text="accepted batches so far (persisted), this one included")
        window_size = serializers.IntegerField(help_text="raw records held across all servers")
        servers_tracked = serializers.IntegerField()
        servers_ready = serializers.IntegerField()
        warmup_complete = serializers.BooleanField()
        accepted = serializers.IntegerField(help_text="records stored by this request")
        duplicates = serializers.IntegerField(help_text="records already stored (same server and timestamp)")

    @extend_schema(**openapi.FEED_DATA)
    def post(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = request.META.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > limit:
            raise BatchRejectedError(413, "body_too_large", f"the body is {length} bytes; the limit is {limit}")
        records = validate_feed_body(
            request.data,
            max_records=settings.TFT_MAX_BATCH_RECORDS,
            max_future=timedelta(seconds=settings.TFT_MAX_FUTURE_SECONDS),
        )
        result = records_ingest(records=records)
        payload = {
            "status": "accepted",
            "tick": result.tick,
            "window_size": result.window_size,
            "servers_tracked": result.servers_tracked,
            "servers_ready": result.servers_ready,
            "warmup_complete": result.warmup_complete,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
        }
        return Response(self.OutputSerializer(payload).data)


class StatusApi(APIView):
    """GET /status — warmup and counters in the contract's shape; ?servers=1 adds per-server readiness."""

    permission_classes = [ReadApiKey]
    throttle_classes = [ReadRateThrottle]

    @extend_schema(**openapi.STATUS)
    def get(self, request):
        totals = counters_totals()
        readiness = fleet_readiness()
        threshold = settings.TFT_WARMUP_RECORDS
        extras = status_extras()
        predictions = extras.get("predictions") or {}
        if readiness.tracked == 0:
            message = "Waiting for data: POST records to /feed/data"
        elif readiness.is_warmed_up:
            if predictions.get("tft_servers"):
                message = "Model ready - using TFT predictions"
            elif predictions:
                message = f"All {readiness.tracked} servers ready - heuristic predictions ({predictions['fallback_reasons']})"
            else:
                message = f"All {readiness.tracked} servers ready - waiting for the first prediction run"
        else:
            message = f"Warming up: {readiness.ready}/{readiness.tracked} servers ready"
        body = {
            "running": True,
            "tick_count": totals.batches,
            "window_size": totals.records,
            "servers_tracked": readiness.tracked,
            "servers_ready": readiness.ready,
            "step_minutes": settings.TFT_STEP_MINUTES,
            "warmup": {
                "is_warmed_up": readiness.is_warmed_up,
                "progress_percent": 100 if readiness.is_warmed_up else readiness.progress_percent,
                "threshold": threshold,
                "current_size": readiness.min_records,
                "required_size": threshold,
                "message": message,
            },
        }
        body.update(extras)
        if request.query_params.get("servers") in {"1", "true", "yes"}:
            body["servers"] = server_readiness_list()
        return Response(body)


def status_extras() -> dict:
    """Hook for the forecasting app to add run and model information to /status."""
    from forecasting.selectors import status_section

    return status_section()


class HealthApi(APIView):
    """GET /health — 200 when the database answers, 503 naming the failing check otherwise."""

    @extend_schema(**openapi.HEALTH)
    def get(self, request):
        database = database_check()
        healthy = database["ok"]
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "service": "tftsite",
            "running": True,
            "checks": {"database": database},
        }
        if not healthy:
            body["failed"] = ["database"]
            return Response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return Response(body)
