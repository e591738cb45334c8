"""Every endpoint's real responses, from real data, validated against their schema in /api/schema/.

The schema is OpenAPI 3.0 (drf-spectacular); it is turned into JSON Schema here: `nullable`
becomes "or null", and an object that lists its properties allows no others, so a field a view
returns but the schema does not declare fails as surely as a declared field that is missing.
"""

import base64
import copy
from datetime import datetime

import jsonschema
import pytest

from tests.conftest import TEST_API_KEY, make_record, post_feed

pytestmark = pytest.mark.django_db


def _strict(node):
    """OpenAPI 3.0 schema objects → JSON Schema 2020-12, strict about undeclared properties."""
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items() if key not in {"nullable", "example", "readOnly"}}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


_formats = jsonschema.FormatChecker(formats=())


@_formats.checks("date-time", raises=ValueError)
def _aware_iso_datetime(value) -> bool:
    return not isinstance(value, str) or datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


@pytest.fixture
def schema(anon_client) -> dict:
    response = anon_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def conforms(schema: dict, path: str, method: str, response) -> None:
    """Fail unless this status is documented for the operation and the body matches its schema."""
    documented = schema["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered {status}, documented: {sorted(documented)}"
    body_schema = documented[status]["content"]["application/json"]["schema"]
    root = {**_strict(body_schema), "components": {"schemas": _strict(schema["components"]["schemas"])}}
    validator = jsonschema.Draft202012Validator(root, format_checker=_formats)
    errors = list(validator.iter_errors(response.json()))
    assert not errors, "\n".join(_describe(error) for error in errors[:10])


def _describe(error: jsonschema.ValidationError) -> str:
    """The deepest reasons: a oneOf (the two /predictions/current shapes) fails as a whole otherwise."""
    leaves = [e for e in error.context if not e.context] or [error]
    return "\n".join(f"{list(e.absolute_path)}: {e.message[:200]}" for e in leaves[:10])


def test_feed_accepted_conforms(schema, client):
    response = post_feed(client, {"records": [{**make_record(), "host_id": "i-1"}]})

    assert response.status_code == 200
    conforms(schema, "/feed/data", "post", response)


def test_feed_rejected_conforms(schema, client):
    response = post_feed(client, {"records": [make_record(cpu=101.0), make_record(state="sleepy")]})

    assert response.status_code == 400
    conforms(schema, "/feed/data", "post", response)


def test_feed_without_key_conforms(schema, anon_client):
    response = post_feed(anon_client, {"records": [make_record()]})

    assert response.status_code == 401
    conforms(schema, "/feed/data", "post", response)


def test_feed_with_a_wrong_key_conforms(schema, anon_client):
    response = post_feed(anon_client, {"records": [make_record()]}, HTTP_X_API_KEY=TEST_API_KEY + "x")

    assert response.status_code == 403
    conforms(schema, "/feed/data", "post", response)


def test_status_before_any_run_conforms(schema, client, feed):
    feed([make_record()])

    for url in ("/status", "/status?servers=1", "/status?model=1"):
        conforms(schema, "/status", "get", client.get(url))


def test_status_with_a_run_conforms(schema, client, fleet_with_a_run):
    for url in ("/status", "/status?servers=1", "/status?model=1"):
        response = client.get(url)
        assert response.json()["predictions"] is not None
        conforms(schema, "/status", "get", response)


def test_health_conforms(schema, client):
    conforms(schema, "/health", "get", client.get("/health"))


def test_predictions_current_before_warmup_conforms(schema, client, feed):
    feed([make_record()])
    response = client.get("/predictions/current")

    assert response.status_code == 503
    conforms(schema, "/predictions/current", "get", response)


def test_predictions_current_conforms(schema, client, fleet_with_a_run):
    response = client.get("/predictions/current")

    assert response.json()["alerts"], "the fixture's hot server should have raised an alert"
    conforms(schema, "/predictions/current", "get", response)


def test_predictions_current_with_guide_names_conforms(schema, client, fleet_with_a_run):
    conforms(schema, "/predictions/current", "get", client.get("/predictions/current?names=guide"))


def test_predictions_server_conforms(schema, client, fleet_with_a_run):
    conforms(schema, "/predictions/{server}", "get", client.get("/predictions/ppdb001"))


def test_predictions_unknown_server_conforms(schema, client, fleet_with_a_run):
    response = client.get("/predictions/ppdb999")

    assert response.status_code == 404
    conforms(schema, "/predictions/{server}", "get", response)


def test_alerts_active_conforms(schema, client, fleet_with_a_run):
    response = client.get("/alerts/active")

    assert response.json()["count"] >= 1
    conforms(schema, "/alerts/active", "get", response)


@pytest.mark.parametrize("name", ["bad%20name", "a%0A", "%C2%88", "a/b"])
def test_predictions_with_a_bad_server_name_is_a_documented_json_400(schema, client, name):
    response = client.get(f"/predictions/{name}")

    assert response.status_code == 400
    conforms(schema, "/predictions/{server}", "get", response)


@pytest.mark.parametrize("names", ["", "&names=guide"])
def test_an_empty_page_past_the_last_server_conforms(schema, client, fleet_with_a_run, names):
    cursor = base64.urlsafe_b64encode(b"zzzz").decode().rstrip("=")  # after every server's name
    response = client.get(f"/predictions/current?cursor={cursor}{names}")

    assert response.status_code == 200 and response.json()["predictions"] == {}
    conforms(schema, "/predictions/current", "get", response)


def test_predictions_current_with_an_empty_names_value_is_a_documented_400(schema, client):
    response = client.get("/predictions/current?names=")

    assert response.status_code == 400
    conforms(schema, "/predictions/current", "get", response)


def test_the_schema_says_what_the_feed_and_reads_enforce(schema):
    body = schema["components"]["schemas"]["FeedBody"]["properties"]["records"]
    record = schema["components"]["schemas"]["FeedRecord"]["properties"]
    server = next(p for p in schema["paths"]["/alerts/active"]["get"]["parameters"] if p["name"] == "server")

    assert (body["minItems"], body["maxItems"]) == (1, 10_000)
    assert (record["disk_io_mb_s"]["maximum"], record["latency_ms"]["maximum"]) == (1e6, 8.64e7)
    assert "TFT_RETENTION_DAYS" in record["timestamp"]["description"]
    assert server["schema"]["pattern"].startswith("^[A-Za-z0-9]")


def test_alerts_active_with_a_bad_server_conforms(schema, client):
    for query in ("server=bad%20name", "server="):
        response = client.get(f"/alerts/active?{query}")

        assert response.status_code == 400
        conforms(schema, "/alerts/active", "get", response)


class _Body:
    """A response stand-in carrying an edited copy of a real body."""

    def __init__(self, status_code: int, body: dict):
        self.status_code = status_code
        self._body = body

    def json(self) -> dict:
        return self._body


def test_an_undeclared_field_fails_conformance(schema, client, fleet_with_a_run):
    body = copy.deepcopy(client.get("/predictions/ppdb001").json())
    body["prediction"]["cpu_pct"]["p99"] = [1.0]

    with pytest.raises(AssertionError, match="p99"):
        conforms(schema, "/predictions/{server}", "get", _Body(200, body))


def test_a_missing_field_fails_conformance(schema, client, fleet_with_a_run):
    body = copy.deepcopy(client.get("/status").json())
    del body["warmup"]["threshold"]

    with pytest.raises(AssertionError, match="threshold"):
        conforms(schema, "/status", "get", _Body(200, body))


def test_a_naive_timestamp_fails_conformance(schema, client, fleet_with_a_run):
    body = copy.deepcopy(client.get("/predictions/current").json())
    body["metadata"]["prediction_time"] = "2025-10-13T16:30:15"

    with pytest.raises(AssertionError, match="date-time"):
        conforms(schema, "/predictions/current", "get", _Body(200, body))
