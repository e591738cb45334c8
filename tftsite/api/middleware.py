"""Turn an unreachable database into a 503 with Retry-After on every page, not a 500."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def database_unavailable_response(exc: Exception) -> JsonResponse:
    logger.warning("database unavailable", extra={"error": f"{type(exc).__name__}: {exc}".strip()[:300]})
    response = JsonResponse(
        {
            "status": "unavailable",
            "error": "database_unavailable",
            "message": "the database is unavailable; nothing from this request was stored — retry later",
        },
        status=503,
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            return database_unavailable_response(exception)
        return None


class CorsMiddleware:
    """CORS closed by default; TFT_CORS_ALLOWED_ORIGINS opens it to exactly those origins."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        from django.conf import settings
        from django.http import HttpResponse

        origin = request.headers.get("Origin")
        allowed = origin is not None and origin in settings.TFT_CORS_ALLOWED_ORIGINS
        if allowed and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = HttpResponse(status=204)
            response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Content-Type, X-API-Key"
            response["Access-Control-Max-Age"] = "600"
        else:
            response = self.get_response(request)
        if allowed:
            response["Access-Control-Allow-Origin"] = origin
            response["Vary"] = "Origin"
        return response
