"""API keys as Prometheus, OTLP exporters, Grafana and KEDA send them: `X-API-Key`,
`Authorization: Bearer <key>`, or HTTP basic auth with the key as the password (or, with no
password, as the user name). The keys and their scopes are the feed's and the reads' own
(access.keys): receivers need a feed key, the read API a read key when TFT_READ_REQUIRES_KEY."""

from __future__ import annotations

import base64
import binascii

from django.conf import settings
from rest_framework.permissions import BasePermission

from access.keys import ApiKeyInvalid, ApiKeyMissing, ApiKeyNotConfigured, identify, keys_configured


def presented_key(request) -> str | None:
    key = request.headers.get("X-API-Key")
    if key:
        return key
    scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return password or user or None
    return None


def key_check(request, *, scope: str, required: bool) -> None:
    """Raises the feed's 401/403 exceptions; sets request.api_key_name (the rate limit's identity)."""
    if not required:
        return
    if not keys_configured():
        raise ApiKeyNotConfigured()
    presented = presented_key(request)
    if not presented:
        raise ApiKeyMissing("this endpoint needs an API key: X-API-Key, Authorization: Bearer, or basic auth")
    identity = identify(presented)
    if identity is None or not getattr(identity, f"can_{scope}"):
        raise ApiKeyInvalid("the key does not match any active API key allowed here")
    request.api_key_name = identity.name


def feed_key_required() -> bool:
    return keys_configured() or not settings.DEBUG


def read_key_required() -> bool:
    return settings.TFT_READ_REQUIRES_KEY


class ProtocolFeedKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        key_check(request, scope="feed", required=feed_key_required())
        return True


class ProtocolReadKey(BasePermission):
    def has_permission(self, request, view) -> bool:
        key_check(request, scope="read", required=read_key_required())
        return True
