"""Site-level pages that belong to no app."""

import pytest

pytestmark = pytest.mark.django_db


def test_favicon_is_a_real_icon(anon_client):
    response = anon_client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert response.content[:4] == b"\x00\x00\x01\x00"  # ICO header: reserved 0, type 1 (icon)


def test_favicon_is_cached_for_a_long_time(anon_client):
    response = anon_client.get("/favicon.ico")

    max_age = int(response["Cache-Control"].split("max-age=")[1])
    assert max_age >= 7 * 24 * 3600
