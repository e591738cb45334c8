"""API key checks for the feed (and, later, the read endpoints)."""

import hmac

from django.conf import settings
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission


class ApiKeyMissing(APIException):
    status_code = 401
    default_code = "missing_api_key"
    default_detail = "this endpoint needs an API key in the X-API-Key header"


class ApiKeyInvalid(APIException):
    status_code = 403
    default_code = "invalid_api_key"
    default_detail = "the X-API-Key header does not match any configured API key"


class ApiKeyNotConfigured(APIException):
    status_code = 403
    default_code = "api_key_not_configured"
    default_detail = "feeding is disabled: DEBUG is off and no API key is configured on the server (set TFT_API_KEY)"


def configured_keys() -> list[str]:
    return [settings.TFT_API_KEY] if settings.TFT_API_KEY else []


def key_matches(presented: str, keys: list[str]) -> bool:
    """Compare against every key in constant time; no early exit that would leak which one matched."""
    presented_bytes = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(presented_bytes, key.encode())
    return matched


class FeedApiKey(BasePermission):
    """The key is required when one is configured, and always when DEBUG is off."""

    def has_permission(self, request, view) -> bool:
        keys = configured_keys()
        if not keys:
            if settings.DEBUG:
                return True
            raise ApiKeyNotConfigured()
        presented = request.headers.get("X-API-Key")
        if not presented:
            raise ApiKeyMissing()
        if not key_matches(presented, keys):
            raise ApiKeyInvalid()
        return True
