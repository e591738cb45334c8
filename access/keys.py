"""API keys: the TFT_API_KEY environment key and named keys from the admin (stored hashed).

Feeding needs a key whenever one is configured, and always when DEBUG is off. Reads need one when
TFT_READ_REQUIRES_KEY is set. Keys are compared in constant time (the env key) or looked up by
their SHA-256 (named keys: the hash of a guess reveals nothing about the stored hash's prefix).
"""

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission

from access.lockout import api_key_lockout_check
from access.models import ApiKey

KEY_PREFIX = "tft_"
# Named keys are cached per process so a feed request costs no extra query; a revoked key stops
# working within this many seconds.
CACHE_SECONDS = 30.0


class ApiKeyMissing(APIException):
    status_code = 401
    default_code = "missing_api_key"
    default_detail = "this endpoint needs an API key in the X-API-Key header"


class ApiKeyInvalid(APIException):
    status_code = 403
    default_code = "invalid_api_key"
    default_detail = "the X-API-Key header does not match any active API key allowed here"


class ApiKeyNotConfigured(APIException):
    status_code = 403
    default_code = "api_key_not_configured"
    default_detail = (
        "this endpoint needs an API key but none is configured on the server "
        "(set TFT_API_KEY or create a key in the admin); with DEBUG off, feeding always needs one"
    )


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    name: str
    can_feed: bool
    can_read: bool


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class _NamedKeyCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._loaded_at = -1e9
        self._by_hash: dict[str, KeyIdentity] = {}

    def get(self) -> dict[str, KeyIdentity]:
        now = time.monotonic()
        if now - self._loaded_at > CACHE_SECONDS:
            rows = ApiKey.objects.filter(is_active=True).values_list("key_hash", "name", "can_feed", "can_read")
            by_hash = {h: KeyIdentity(n, f, r) for h, n, f, r in rows}
            with self._lock:
                self._by_hash, self._loaded_at = by_hash, now
        return self._by_hash

    def clear(self) -> None:
        with self._lock:
            self._loaded_at = -1e9


named_keys = _NamedKeyCache()


_last_used_written: dict[str, float] = {}


def identify(presented: str) -> KeyIdentity | None:
    """Who this key belongs to, or None."""
    env_key = settings.TFT_API_KEY
    if env_key and hmac.compare_digest(presented.encode(), env_key.encode()):
        return KeyIdentity("env:TFT_API_KEY", True, True)
    identity = named_keys.get().get(hash_key(presented))
    if identity is not None:
        # last_used_at is for operators ("is this feeder still alive?"): once a minute is plenty.
        now = time.monotonic()
        if now - _last_used_written.get(identity.name, -1e9) > 60:
            _last_used_written[identity.name] = now
            ApiKey.objects.filter(name=identity.name).update(last_used_at=datetime.now(UTC))
    return identity


def keys_configured() -> bool:
    return bool(settings.TFT_API_KEY) or bool(named_keys.get())


def _check(request, *, scope: str, required: bool) -> bool:
    if not required:
        return True
    if not keys_configured():
        raise ApiKeyNotConfigured()
    presented = request.headers.get("X-API-Key")
    if not presented:
        raise ApiKeyMissing()
    identity = identify(presented)
    api_key_lockout_check(request, presented=presented, identity=identity)  # 429 after repeated failures
    if identity is None or not getattr(identity, f"can_{scope}"):
        raise ApiKeyInvalid()
    request.api_key_name = identity.name
    return True


class FeedApiKey(BasePermission):
    """Required when any key is configured, and always when DEBUG is off."""

    def has_permission(self, request, view) -> bool:
        return _check(request, scope="feed", required=keys_configured() or not settings.DEBUG)


class ReadApiKey(BasePermission):
    """Required for reads only when TFT_READ_REQUIRES_KEY is on."""

    def has_permission(self, request, view) -> bool:
        return _check(request, scope="read", required=settings.TFT_READ_REQUIRES_KEY)
