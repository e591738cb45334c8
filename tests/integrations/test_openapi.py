"""OpenAPI schema and the interactive docs, served from local static files (offline)."""

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db

CONTRACT_PATHS = {
    "/feed/data": "post",
    "/status": "get",
    "/health": "get",
    "/predictions/current": "get",
    "/predictions/{server}": "get",
    "/alerts/active": "get",
}


def test_schema_documents_every_endpoint_with_examples(anon_client):
    response = anon_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path, method in CONTRACT_PATHS.items():
        operation = schema["paths"][path][method]
        ok = operation["responses"]["200"]["content"]["application/json"]
        assert ok.get("examples"), f"{method.upper()} {path} has no response example"
    feed = schema["paths"]["/feed/data"]["post"]
    request_examples = feed["requestBody"]["content"]["application/json"]["examples"]
    first = next(iter(request_examples.values()))["value"]
    assert first["records"][0]["server_name"] == "ppdb001"
    assert {"400", "401", "403", "413"} <= set(feed["responses"])
    assert feed["security"] == [{"ApiKeyAuth": []}]
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]


def test_docs_pages_use_local_assets(anon_client, settings):
    # Tests do not run collectstatic; the manifest storage would refuse to name the assets.
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    for url, asset in (("/api/docs/", "swagger-ui-dist/swagger-ui-bundle.js"),
                       ("/api/redoc/", "redoc/bundles/redoc.standalone.js")):
        response = anon_client.get(url)
        assert response.status_code == 200
        html = response.content.decode()
        assert f"/static/drf_spectacular_sidecar/{asset}" in html
        assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
        assert finders.find(f"drf_spectacular_sidecar/{asset}"), asset
