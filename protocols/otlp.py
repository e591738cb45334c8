"""OTLP/HTTP metrics (`POST /v1/metrics`): an ExportMetricsServiceRequest as protobuf or JSON,
optionally gzip-compressed (https://opentelemetry.io/docs/specs/otlp/#otlphttp).

Gauges and sums are read; a metric is mapped by name as a remote_write series is. The server is the
first of TFT_PROTOCOL_SERVER_LABELS among the point's attributes, else the first of
TFT_PROTOCOL_SERVER_ATTRIBUTES among the resource's (`host.name`, then `service.instance.id`); the
state a point's `state` attribute. Points that break the contract (or name no server, or are a
histogram of a contract metric) are rejected and reported in `partial_success`; the rest are stored.
"""

from __future__ import annotations

import zlib

from django.conf import settings
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from protocols.mapping import Partials, instants, partials_problems, series_metric, server_from_labels
from protocols.remote_write import BodyTooLargeError, MalformedBodyError

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_NO_RECORDED_VALUE = 1  # DataPointFlags.FLAG_NO_RECORDED_VALUE


def gunzip(body: bytes, *, limit: int) -> bytes:
    """Inflate at most `limit` bytes: a gzip bomb stops at the limit instead of filling memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise MalformedBodyError(f"the body is not valid gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise BodyTooLargeError(f"the body decompresses to more than {limit} bytes")
    if not inflater.eof:
        raise MalformedBodyError("the gzip body is truncated")
    return data


def export_request_parse(data: bytes, *, json_body: bool):
    request = ExportMetricsServiceRequest()
    try:
        if json_body:
            json_format.Parse(data.decode("utf-8"), request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(data)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        kind = "JSON" if json_body else "protobuf"
        raise MalformedBodyError(f"the body is not an OTLP ExportMetricsServiceRequest ({kind}): {exc}"[:300]) from None
    return request


def _value(any_value) -> str | None:
    kind = any_value.WhichOneof("value")
    if kind in ("string_value", "int_value", "double_value", "bool_value"):
        return str(getattr(any_value, kind))
    return None


def _attributes(key_values) -> dict[str, str]:
    return {kv.key: v for kv in key_values if (v := _value(kv.value)) is not None}


def _resource_server(attributes: dict[str, str]) -> str | None:
    return next((attributes[a] for a in settings.TFT_PROTOCOL_SERVER_ATTRIBUTES if attributes.get(a)), None)


def export_request_partials(request) -> tuple[Partials, int]:
    """(the records the points make up, points rejected for their shape: histograms, no server)."""
    partials, rejected = Partials(), 0
    for resource_metrics in request.resource_metrics:
        resource = _attributes(resource_metrics.resource.attributes)
        default_server = _resource_server(resource)
        points = []
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                rejected += _metric_points(partials, metric, default_server, points)
        starts = instants([p[3] for p in points])
        for name, labels, server, ts_ms, value in points:
            partials.add_sample(metric=name, labels=labels, server=server, ts_ms=starts[ts_ms], value=value)
    return partials, rejected


def _metric_points(partials: Partials, metric, default_server: str | None, points: list) -> int:
    """Adds the metric's usable points to `points`; returns how many were rejected."""
    name = series_metric(metric.name)
    kind = metric.WhichOneof("data")
    if name is None:
        partials.ignored += _point_count(metric, kind)
        return 0
    if kind not in ("gauge", "sum"):
        return _point_count(metric, kind)
    rejected = 0
    for point in getattr(metric, kind).data_points:
        if point.flags & _NO_RECORDED_VALUE:
            partials.ignored += 1
            continue
        labels = _attributes(point.attributes)
        server = server_from_labels(labels) or default_server
        if server is None:
            rejected += 1
            continue
        value = point.as_double if point.WhichOneof("value") == "as_double" else float(point.as_int)
        points.append((name, labels, server, point.time_unix_nano // 1_000_000, value))
    return rejected


def _point_count(metric, kind: str | None) -> int:
    return len(getattr(metric, kind).data_points) if kind else 0


def partials_split(partials: Partials) -> tuple[int, str]:
    """Remove the records the contract rejects; returns (points removed, the first problems)."""
    problems = partials_problems(partials)
    if not problems:
        return 0, ""
    keys = sorted(partials.records)
    bad = {keys[p.index] for p in problems if p.index is not None}
    removed = sum(len(partials.records.pop(key)) for key in bad)
    partials.samples -= removed
    removed += partials.bad_time_count
    partials.bad_times, partials.bad_time_count = [], 0
    return removed, "; ".join(p.message for p in problems[:5])


def export_response(*, rejected: int, message: str, json_body: bool) -> tuple[bytes, str]:
    response = ExportMetricsServiceResponse()
    if rejected:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = message[:1000]
    if json_body:
        return json_format.MessageToJson(response, indent=None).encode(), JSON
    return response.SerializeToString(), PROTOBUF
