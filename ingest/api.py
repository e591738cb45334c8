"""Feed and health endpoints. Views validate and call services; nothing else."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from access.errors import KEY_ERRORS, RETRY_AFTER_SECONDS, ErrorSerializer
from access.views import FeedApiView
from ingest.contract import SERVER_NAME_PATTERN, VALID_STATES
from ingest.selectors import database_check
from ingest.services import records_ingest
from ingest.validation import METRIC_MAXIMA, BatchRejectedError, ignored_fields, validate_feed_body

# The contract's example records (the guide's curl example and its second server).
RECORD_PPDB001 = {
    "timestamp": "2025-10-13T16:00:00",
    "server_name": "ppdb001",
    "cpu_pct": 45.2,
    "mem_pct": 67.8,
    "disk_io_mb_s": 123.4,
    "latency_ms": 12.5,
    "state": "healthy",
}
RECORD_PPDB002 = {**RECORD_PPDB001, "server_name": "ppdb002", "cpu_pct": 52.1, "mem_pct": 71.3,
                  "disk_io_mb_s": 98.7, "latency_ms": 15.8}


class FeedRecordSerializer(serializers.Serializer):
    """Documents one record; the rules themselves are ingest.validation's (a serializer per record is
    too slow for 10,000-record batches), and the limits below are its constants."""

    timestamp = serializers.DateTimeField(
        help_text=f"ISO 8601; no offset means UTC. Accepted from TFT_RETENTION_DAYS ({settings.TFT_RETENTION_DAYS}) "
        f"days ago to {settings.TFT_MAX_FUTURE_SECONDS} seconds ahead of the server's clock (a window relative to "
        "now, which JSON Schema cannot express): an older or later record is a 400 naming it."
    )
    server_name = serializers.RegexField(rf"^{SERVER_NAME_PATTERN}$", help_text="e.g. ppdb001")
    cpu_pct = serializers.FloatField(min_value=0, max_value=METRIC_MAXIMA["cpu_pct"])
    mem_pct = serializers.FloatField(min_value=0, max_value=METRIC_MAXIMA["mem_pct"])
    disk_io_mb_s = serializers.FloatField(
        min_value=0, max_value=METRIC_MAXIMA["disk_io_mb_s"], help_text="at most 10^6 MB/s: the 5-minute rollups add values up"
    )
    latency_ms = serializers.FloatField(
        min_value=0, max_value=METRIC_MAXIMA["latency_ms"], help_text="at most 8.64 × 10^7 ms (one day)"
    )
    state = serializers.ChoiceField(choices=VALID_STATES)


class IgnoredFieldsSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="ignored field values in this batch (one per record carrying it)")
    names = serializers.ListField(child=serializers.CharField(), help_text="distinct names, sorted, at most 20")


class FeedDataApi(FeedApiView):
    """POST /feed/data — the contract's feed endpoint."""

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FeedBody"

        # A ListField, not many=True: its length limits are validators, which the schema shows as minItems/maxItems.
        records = serializers.ListField(
            child=FeedRecordSerializer(),
            min_length=1,
            max_length=settings.TFT_MAX_BATCH_RECORDS,
            help_text="1 to TFT_MAX_BATCH_RECORDS records (an empty list is a 400, more is a 413); fields beyond "
            "the 7 are ignored",
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "FeedAccepted"

        status = serializers.ChoiceField(choices=["accepted"])
        tick = serializers.IntegerField(help_text="accepted batches so far (persisted), this one included")
        window_size = serializers.IntegerField(help_text="raw records held across all servers")
        servers_tracked = serializers.IntegerField(
            help_text="servers feeding: a batch within TFT_SERVER_SILENT_AFTER_MINUTES (silent ones are counted out)"
        )
        servers_ready = serializers.IntegerField(help_text="feeding servers past warmup")
        warmup_complete = serializers.BooleanField()
        accepted = serializers.IntegerField(help_text="records stored by this request")
        duplicates = serializers.IntegerField(help_text="records already stored (same server and timestamp)")
        ignored_fields = IgnoredFieldsSerializer(
            help_text="fields beyond the contract's 7 in this batch: accepted, not stored, reported here"
        )

    @extend_schema(
        summary="Submit server metrics",
        description="Stores a batch atomically and idempotently (a record whose server and timestamp is "
        "already stored counts as a duplicate). Any invalid record rejects the whole batch with every problem "
        "listed. Fields beyond the contract's 7 are accepted and ignored, and counted in `ignored_fields`. "
        "Send all servers in one batch, every 5 seconds.",
        auth=[{"ApiKeyAuth": []}],
        request=InputSerializer,
        examples=[
            OpenApiExample("Two servers (contract)", value={"records": [RECORD_PPDB001, RECORD_PPDB002]},
                           request_only=True),
            OpenApiExample(
                "Critical incident",
                value={"records": [{"timestamp": "2025-10-13T16:05:30", "server_name": "ppweb003", "cpu_pct": 98.7,
                                    "mem_pct": 94.2, "disk_io_mb_s": 567.8, "latency_ms": 234.5,
                                    "state": "critical_issue"}]},
                request_only=True,
            ),
        ],
        responses={
            200: OpenApiResponse(
                OutputSerializer,
                examples=[
                    OpenApiExample(
                        "Accepted",
                        value={"status": "accepted", "tick": 42, "window_size": 840, "servers_tracked": 20,
                               "servers_ready": 20, "warmup_complete": True, "accepted": 2, "duplicates": 0,
                               "ignored_fields": {"count": 2, "names": ["host_id"]}},
                    )
                ],
            ),
            400: OpenApiResponse(
                ErrorSerializer,
                description="The body or some records break the contract; nothing was stored.",
                examples=[
                    OpenApiExample(
                        "Invalid records",
                        value={"status": "rejected", "error": "invalid_records",
                               "message": "1 of 2 records break the data contract; nothing was stored",
                               "errors": [{"index": 1, "field": "cpu_pct", "message": "must be between 0 and 100"}]},
                    )
                ],
            ),
            413: OpenApiResponse(ErrorSerializer, description="Too many records or too large a body."),
            **KEY_ERRORS,
            503: OpenApiResponse(ErrorSerializer, description="Database unavailable; retry after Retry-After."),
        },
    )
    def post(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        length = request.META.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > limit:
            raise BatchRejectedError(413, "body_too_large", f"the body is {length} bytes; the limit is {limit}")
        records = validate_feed_body(request.data, max_records=settings.TFT_MAX_BATCH_RECORDS)
        result = records_ingest(records=records)
        payload = {
            "status": "accepted",
            "tick": result.tick,
            "window_size": result.window_size,
            "servers_tracked": result.servers_tracked,
            "servers_ready": result.servers_ready,
            "warmup_complete": result.warmup_complete,
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "ignored_fields": ignored_fields(request.data["records"]).as_dict(),
        }
        return Response(self.OutputSerializer(payload).data)


class HealthApi(APIView):
    """GET /health — 200 when the database answers, 503 naming the failing check otherwise."""

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Health"

        status = serializers.ChoiceField(choices=["healthy", "unhealthy"])
        service = serializers.CharField()
        running = serializers.BooleanField()
        checks = serializers.DictField(
            help_text="check name → {ok, latency_ms, vendor} or {ok, error}; the error says what is unavailable, "
            "never the driver's text (that goes to the log)"
        )
        failed = serializers.ListField(child=serializers.CharField(), required=False,
                                       help_text="only when unhealthy: the failing checks")

    @extend_schema(
        summary="Health check for load balancers",
        responses={
            200: OpenApiResponse(
                OutputSerializer,
                examples=[
                    OpenApiExample(
                        "Healthy",
                        value={"status": "healthy", "service": "tftsite", "running": True,
                               "checks": {"database": {"ok": True, "latency_ms": 0.41, "vendor": "postgresql"}}},
                    )
                ],
            ),
            503: OpenApiResponse(
                OutputSerializer,
                description="A check failed; `failed` names it.",
                examples=[
                    OpenApiExample(
                        "Database down",
                        value={"status": "unhealthy", "service": "tftsite", "running": True,
                               "checks": {"database": {"ok": False, "error": "database unavailable"}},
                               "failed": ["database"]},
                    )
                ],
            ),
        },
    )
    def get(self, request):
        database = database_check()
        healthy = database["ok"]
        body = {
            "status": "healthy" if healthy else "unhealthy",
            "service": "tftsite",
            "running": True,
            "checks": {"database": database},
        }
        if not healthy:
            body["failed"] = ["database"]
            return Response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return Response(body)
