"""Writes of the access app: named API keys are created (the raw key returned once) and revoked."""

from access.keys import generate_key, hash_key, named_keys
from access.models import ApiKey


def api_key_create(*, name: str, can_feed: bool = True, can_read: bool = True) -> tuple[ApiKey, str]:
    """Create a named key; returns the row and the raw key, which is shown once and never stored."""
    raw = generate_key()
    key = ApiKey.objects.create(
        name=name, prefix=raw[:10], key_hash=hash_key(raw), can_feed=can_feed, can_read=can_read
    )
    named_keys.clear()
    return key, raw


def api_key_revoke(*, key_id: int) -> bool:
    changed = ApiKey.objects.filter(pk=key_id, is_active=True).update(is_active=False)
    named_keys.clear()
    return bool(changed)
