"""Counters for GET /metrics (prometheus_client multiprocess mode, like ingest.feed_metrics): what
the receivers did with every sample and record, so nothing is dropped silently."""

from prometheus_client import Counter

PROTOCOL_REQUESTS = Counter(
    "tft_protocol_requests",
    "Requests to the remote_write and OTLP receivers by protocol and HTTP status.",
    ["protocol", "code"],
)
PROTOCOL_SAMPLES = Counter(
    "tft_protocol_samples",
    "Samples received by protocol and outcome: used (fed a record), ignored (a series we do not map, a "
    "staleness marker), rejected (broke the contract: a 400, or an OTLP partial success).",
    ["protocol", "outcome"],
)
PROTOCOL_RECORDS = Counter(
    "tft_protocol_records",
    "Records assembled from samples by outcome: stored, duplicate (already stored: a retry), pending (waiting "
    "for a missing metric), filled (stored from the last known value after TFT_PROTOCOL_WAIT_SECONDS), "
    "dropped (still incomplete after the wait, with no known value or TFT_PROTOCOL_INCOMPLETE=drop).",
    ["outcome"],
)


def records_count(**outcomes: int) -> None:
    for outcome, n in outcomes.items():
        if n:
            PROTOCOL_RECORDS.labels(outcome=outcome).inc(n)


def samples_count(protocol: str, **outcomes: int) -> None:
    for outcome, n in outcomes.items():
        if n:
            PROTOCOL_SAMPLES.labels(protocol=protocol, outcome=outcome).inc(n)
