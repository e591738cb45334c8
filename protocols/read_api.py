"""A Prometheus-compatible read API under /prometheus (Grafana's stock Prometheus data source and
promtool point at http://host:8000/prometheus): query, query_range, series, labels, label values,
metadata and buildinfo, for vector selectors (protocols.promql). Plain Django views answering in
Prometheus' JSON shapes, errors included; a read key when TFT_READ_REQUIRES_KEY, the read rate limit."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import APIException

from access.throttles import ReadRateThrottle
from protocols.auth import key_check, read_key_required
from protocols.forecasts import forecast_server_names
from protocols.promql import BadDataError, duration_seconds, number_literal, selector_parse, time_parse
from protocols.selectors import server_names
from protocols.series import FAMILIES, HELP, LABEL_NAMES, TooManySamplesError, series_labels, series_load, value_at

MAX_POINTS_PER_SERIES = 11_000  # Prometheus' own limit for query_range
BUILD_INFO = {
    "version": "2.42.0",
    "revision": "tftsite",
    "branch": "tftsite",
    "buildUser": "tftsite",
    "buildDate": "",
    "goVersion": "",
}


def _json(body: dict, status: int = 200, headers: dict | None = None) -> HttpResponse:
    return HttpResponse(
        json.dumps(body, separators=(",", ":")), status=status, content_type="application/json", headers=headers
    )


def _error(error_type: str, message: str, status: int, headers: dict | None = None) -> HttpResponse:
    return _json({"status": "error", "errorType": error_type, "error": message}, status, headers)


def _success(data) -> HttpResponse:
    return _json({"status": "success", "data": data})


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _params(request) -> dict:
    """GET query or POST form parameters (Grafana POSTs), lists for repeated names such as match[]."""
    source = request.POST if request.method == "POST" else request.GET
    return {key: source.getlist(key) for key in source}


def _one(params: dict, name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def read_endpoint(view):
    """Method check, key, rate limit and Prometheus-shaped errors around a read view."""

    @csrf_exempt
    def wrapped(request, *args, **kwargs):
        if request.method not in ("GET", "POST"):
            return _error("bad_data", "use GET or POST", 405, {"Allow": "GET, POST"})
        try:
            key_check(request, scope="read", required=read_key_required())
        except APIException as exc:
            return _error("unauthorized", str(exc.detail), exc.status_code)
        throttle = ReadRateThrottle()
        if not throttle.allow_request(request, None):
            return _error(
                "too_many_requests",
                "over the read rate limit",
                429,
                {"Retry-After": str(math.ceil(throttle.wait()))},
            )
        try:
            return view(request, _params(request), *args, **kwargs)
        except BadDataError as exc:
            return _error("bad_data", str(exc), 400)
        except TooManySamplesError as exc:
            return _error("execution", str(exc), 422)

    return wrapped


@read_endpoint
def query_view(request, params):
    query = _one(params, "query")
    if not query:
        raise BadDataError('invalid parameter "query": it is required')
    at = time_parse(_one(params, "time"), default=datetime.now(UTC))
    t = at.timestamp()
    number = number_literal(query)
    if number is not None:
        return _success({"resultType": "scalar", "result": [t, _number(number)]})
    result = []
    for series in series_load(selector_parse(query), start=at, end=at, steps=1):
        value, _ = value_at(series.points, t)
        if value is not None:
            result.append({"metric": series.labels, "value": [t, _number(value)]})
    return _success({"resultType": "vector", "result": result})


@read_endpoint
def query_range_view(request, params):
    query = _one(params, "query")
    if not query:
        raise BadDataError('invalid parameter "query": it is required')
    start = time_parse(_one(params, "start"), name="start")
    end = time_parse(_one(params, "end"), name="end")
    step = duration_seconds(_one(params, "step"))
    if end < start:
        raise BadDataError('invalid parameter "end": end timestamp must not be before start time')
    steps = int((end.timestamp() - start.timestamp()) // step) + 1
    if steps > MAX_POINTS_PER_SERIES:
        raise BadDataError(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
            "resolution (?step=XX)"
        )
    times = [start.timestamp() + i * step for i in range(steps)]
    number = number_literal(query)
    if number is not None:
        return _success(
            {"resultType": "matrix", "result": [{"metric": {}, "values": [[t, _number(number)] for t in times]}]}
        )
    result = []
    for series in series_load(selector_parse(query), start=start, end=end, steps=steps):
        values, cursor = [], 0
        for t in times:
            value, cursor = value_at(series.points, t, cursor=cursor)
            if value is not None:
                values.append([t, _number(value)])
        if values:
            result.append({"metric": series.labels, "values": values})
    return _success({"resultType": "matrix", "result": result})


def _matched_labels(params: dict, *, required: bool) -> list[dict[str, str]] | None:
    selectors = params.get("match[]") or []
    if not selectors:
        if required:
            raise BadDataError("no match[] parameter provided")
        return None
    seen, out = set(), []
    for selector in selectors:
        for labels in series_labels(selector_parse(selector)):
            key = tuple(sorted(labels.items()))
            if key not in seen:
                seen.add(key)
                out.append(labels)
    return out


@read_endpoint
def series_view(request, params):
    return _success(_matched_labels(params, required=True))


@read_endpoint
def labels_view(request, params):
    matched = _matched_labels(params, required=False)
    if matched is None:
        return _success(LABEL_NAMES)
    return _success(sorted({name for labels in matched for name in labels}))


@read_endpoint
def label_values_view(request, params, name: str):
    matched = _matched_labels(params, required=False)
    if matched is not None:
        return _success(sorted({labels[name] for labels in matched if name in labels}))
    if name == "__name__":
        return _success(sorted(FAMILIES))
    if name == "server_name":
        names = set(server_names()) | {n for n, _ in forecast_server_names()}
        return _success(sorted(names))
    values = {v for dims in FAMILIES.values() for v in dims.get(name, ())}
    return _success(sorted(values))


@read_endpoint
def metadata_view(request, params):
    return _success({family: [{"type": "gauge", "help": HELP[family], "unit": ""}] for family in FAMILIES})


@read_endpoint
def buildinfo_view(request, params):
    return _success(BUILD_INFO)


@read_endpoint
def empty_list_view(request, params):
    """query_exemplars and the like, which Grafana asks for: nothing, successfully."""
    return _success([])
