"""Every API error is JSON with an `error` code and a human `message`; the bodies are written here once."""

import logging

from django.db import DatabaseError, InterfaceError, OperationalError
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

# How long a client should wait after a 503 for an unreachable database.
RETRY_AFTER_SECONDS = 5


class ApiError(Exception):
    """An error whose JSON body the caller should see as it is (status, code, message, and the items
    that went wrong). Apps raise subclasses (e.g. ingest's contract rejections); the handler below
    renders them without knowing the app."""

    def __init__(self, status: int, error: str, message: str, problems: list | None = None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        # Items with an ``as_dict()`` giving ``index``, ``field`` and ``message`` (ErrorItemSerializer).
        self.problems = problems or []

    def body(self) -> dict:
        body = {"status": "rejected", "error": self.error, "message": self.message}
        if self.problems:
            body["errors"] = [p.as_dict() for p in self.problems]
        return body


class ErrorItemSerializer(serializers.Serializer):
    index = serializers.IntegerField(allow_null=True, help_text="the record's position in `records`")
    field = serializers.CharField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """The shape of every error body this handler and the middleware write."""

    status = serializers.ChoiceField(choices=["rejected", "unavailable", "error"], required=False)
    error = serializers.CharField(help_text="machine-readable code, e.g. invalid_records, missing_api_key")
    message = serializers.CharField()
    errors = ErrorItemSerializer(many=True, required=False)


# The documented answers of an endpoint that checks API keys.
KEY_ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="No X-API-Key header where a key is required."),
    403: OpenApiResponse(ErrorSerializer, description="The key does not match, or none is configured."),
    429: OpenApiResponse(ErrorSerializer, description="Rate limit, or too many wrong keys from this address "
                         "(lockout); retry after Retry-After."),
}


def database_unavailable(exc: Exception) -> tuple[dict, dict]:
    """The 503 body and headers for an unreachable database (middleware and DRF views alike)."""
    logger.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}".strip()[:300]})
    body = {
        "status": "unavailable",
        "error": "database_unavailable",
        "message": "the database is unavailable; nothing from this request was stored — retry later",
    }
    return body, {"Retry-After": str(RETRY_AFTER_SECONDS)}


def _error(code: str, message: str) -> dict:
    return {"status": "error", "error": code, "message": message}


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: contract rejections, 503 for a dead database, JSON for the rest."""
    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status)
    if isinstance(exc, (OperationalError, InterfaceError)):
        body, headers = database_unavailable(exc)
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE, headers=headers)
    if isinstance(exc, APIException):
        response = drf_exception_handler(exc, context)
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "invalid_request"
        response.data = {"status": "rejected", "error": code, "message": _flatten(exc.detail)}
        return response
    if isinstance(exc, DatabaseError):
        logger.exception("database error")
        body = _error("database_error", "the database rejected the request; nothing from this request was stored")
        return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    logger.exception("unhandled error")
    body = _error("internal_error", "internal error on our side; nothing from this request was stored")
    return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR)


def _flatten(detail) -> str:
    if isinstance(detail, list):
        return "; ".join(_flatten(d) for d in detail)
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    return str(detail)
