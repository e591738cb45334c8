"""The receivers: POST /api/v1/write (Prometheus remote_write 1.0) and POST /v1/metrics (OTLP/HTTP).
Views validate and call services; the answers follow each protocol's retry rules: 2xx stored, 400
malformed (never retried), 413 too large, 429/503 with Retry-After when we are behind."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from access.errors import KEY_ERRORS, ErrorSerializer
from access.throttles import FeedRateThrottle
from ingest.validation import BatchRejectedError
from protocols import otlp, remote_write
from protocols.auth import ProtocolFeedKey
from protocols.metrics import PROTOCOL_REQUESTS, samples_count
from protocols.services import samples_store

_ERRORS = {
    400: OpenApiResponse(
        ErrorSerializer,
        description="Malformed body or samples that break the contract; nothing was stored (not to be retried).",
    ),
    413: OpenApiResponse(ErrorSerializer, description="The body, or what it decompresses to, is too large."),
    **KEY_ERRORS,
    429: OpenApiResponse(ErrorSerializer, description="Over the feed rate limit; retry after Retry-After."),
    503: OpenApiResponse(ErrorSerializer, description="Database unavailable; retry after Retry-After."),
}


def _body(request) -> bytes:
    """The raw body, refused by its declared length before it is read."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    length = request.META.get("CONTENT_LENGTH")
    if length and length.isdigit() and int(length) > limit:
        raise BatchRejectedError(413, "body_too_large", f"the body is {length} bytes; the limit is {limit}")
    return request.body


def _protocol_error(exc: ValueError) -> BatchRejectedError:
    if isinstance(exc, remote_write.BodyTooLargeError):
        return BatchRejectedError(413, "body_too_large", str(exc))
    return BatchRejectedError(400, "malformed_body", str(exc))


class ReceiverApiView(APIView):
    """A feed key as the exporters send it, the feed's rate limit, requests counted per protocol."""

    permission_classes = [ProtocolFeedKey]
    throttle_classes = [FeedRateThrottle]
    protocol = ""

    def finalize_response(self, request, response, *args, **kwargs):
        PROTOCOL_REQUESTS.labels(protocol=self.protocol, code=str(response.status_code)).inc()
        return super().finalize_response(request, response, *args, **kwargs)


class StoredSerializer(serializers.Serializer):
    class Meta:
        ref_name = "RemoteWriteAccepted"

    status = serializers.CharField(help_text='"accepted"')
    samples = serializers.IntegerField(help_text="samples that fed a record")
    ignored = serializers.IntegerField(help_text="samples of series we do not map, and staleness markers")
    stored = serializers.IntegerField(help_text="records stored by this request")
    duplicates = serializers.IntegerField(help_text="records already stored (a retry)")
    pending = serializers.IntegerField(help_text="records waiting for a missing metric")
    filled = serializers.IntegerField(help_text="records stored from last known values after the wait")
    dropped = serializers.IntegerField(help_text="records dropped after the wait")


def _stored_body(partials, result) -> dict:
    return {
        "status": "accepted",
        "samples": partials.samples,
        "ignored": partials.ignored,
        "stored": result.stored,
        "duplicates": result.duplicates,
        "pending": result.pending,
        "filled": result.filled,
        "dropped": result.dropped,
    }


class RemoteWriteApi(ReceiverApiView):
    """POST /api/v1/write — Prometheus remote_write 1.0."""

    protocol = "remote_write"

    @extend_schema(
        summary="Prometheus remote_write 1.0 receiver",
        description="A snappy-compressed protobuf prometheus.WriteRequest. Series mapped to contract records as "
        "README 'Observability protocols' says; atomic and idempotent like POST /feed/data.",
        auth=[{"ApiKeyAuth": []}],
        request={"application/x-protobuf": bytes},
        responses={
            200: StoredSerializer,
            **_ERRORS,
            415: OpenApiResponse(ErrorSerializer, description="Not remote_write 1.0 (e.g. 2.0)."),
        },
    )
    def post(self, request):
        content_type = request.META.get("CONTENT_TYPE", "")
        if "proto=io.prometheus.write.v2" in content_type:
            raise BatchRejectedError(415, "unsupported_media_type", "remote_write 2.0 is not supported; send 1.0")
        encoding = request.headers.get("Content-Encoding", "snappy").lower()
        if encoding != "snappy":
            raise BatchRejectedError(415, "unsupported_encoding", "remote_write bodies are snappy-compressed")
        try:
            data = remote_write.snappy_decompress(_body(request), limit=settings.TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES)
            partials = remote_write.write_request_partials(remote_write.write_request_parse(data))
        except (remote_write.MalformedBodyError, remote_write.BodyTooLargeError) as exc:
            raise _protocol_error(exc) from None
        try:
            result = samples_store(partials=partials)
        except BatchRejectedError:
            samples_count(self.protocol, rejected=partials.samples, ignored=partials.ignored)
            raise
        samples_count(self.protocol, used=partials.samples, ignored=partials.ignored)
        return Response(_stored_body(partials, result))


class OtlpMetricsApi(ReceiverApiView):
    """POST /v1/metrics — OTLP/HTTP metrics, protobuf or JSON, optionally gzip."""

    protocol = "otlp"

    @extend_schema(
        summary="OTLP/HTTP metrics receiver",
        description="An ExportMetricsServiceRequest (application/x-protobuf or application/json, gzip allowed). "
        "Gauges and sums of the contract metrics become records; rejected points are reported in partial_success.",
        auth=[{"ApiKeyAuth": []}],
        request={"application/x-protobuf": bytes, "application/json": dict},
        responses={
            200: OpenApiResponse(description="ExportMetricsServiceResponse in the request's encoding"),
            **_ERRORS,
            415: OpenApiResponse(ErrorSerializer, description="Neither protobuf nor JSON."),
        },
    )
    def post(self, request):
        content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
        if content_type not in (otlp.PROTOBUF, otlp.JSON):
            raise BatchRejectedError(415, "unsupported_media_type", "send application/x-protobuf or application/json")
        json_body = content_type == otlp.JSON
        encoding = request.headers.get("Content-Encoding", "identity").lower()
        if encoding not in ("gzip", "identity"):
            raise BatchRejectedError(415, "unsupported_encoding", "Content-Encoding must be gzip or identity")
        limit = settings.TFT_PROTOCOL_MAX_DECOMPRESSED_BYTES
        try:
            data = _body(request)
            data = otlp.gunzip(data, limit=limit) if encoding == "gzip" else data
            partials, rejected = otlp.export_request_partials(otlp.export_request_parse(data, json_body=json_body))
        except (remote_write.MalformedBodyError, remote_write.BodyTooLargeError) as exc:
            raise _protocol_error(exc) from None
        removed, message = otlp.partials_split(partials)
        rejected += removed
        if rejected and not message:
            message = "points of a contract metric with no server attribute, or not a gauge or sum"
        samples_store(partials=partials)
        samples_count(self.protocol, used=partials.samples, ignored=partials.ignored, rejected=rejected)
        body, media_type = otlp.export_response(rejected=rejected, message=message, json_body=json_body)
        return HttpResponse(body, content_type=media_type)
