"""Middleware for every page: a 503 with Retry-After for an unreachable database, and CORS."""

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

from access.errors import database_unavailable


class DatabaseUnavailableMiddleware:
    """Turn an unreachable database into a 503 with Retry-After on every page, not a 500."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            body, headers = database_unavailable(exception)
            return JsonResponse(body, status=503, headers=headers)
        return None


class CorsMiddleware:
    """CORS closed by default; TFT_CORS_ALLOWED_ORIGINS opens it to exactly those origins."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
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
