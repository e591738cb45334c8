"""Per-request feed metrics for GET /metrics: latency histogram and record outcomes.

The database knows stored records and accepted batches (FeedCounter) and GET /metrics reads those at
scrape time. What it does not know (how long a feed request took, how many records were duplicates
or broke the contract) is counted here, in prometheus_client's multiprocess mode: every gunicorn
worker writes its own file under PROMETHEUS_MULTIPROC_DIR and a scrape of any worker sums them all.
"""

import re
import time

from prometheus_client import Counter, Histogram

_FEED_PATH = re.compile(r"^/feed/data/?$")

FEED_LATENCY = Histogram(
    "tft_feed_request_duration_seconds",
    "Time to handle POST /feed/data, validation and storage included.",
    # A batch of 1,000 records takes tens of milliseconds; 10 s would be a stuck database.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
FEED_REQUESTS = Counter(
    "tft_feed_requests", "POST /feed/data requests by HTTP status code.", ["code"]
)
FEED_RECORDS = Counter(
    "tft_feed_records",
    "Records received on POST /feed/data by outcome: accepted (stored), duplicate (already stored), "
    "rejected (broke the contract; their whole batch was refused).",
    ["outcome"],
)


def feed_observe(*, seconds: float, status_code: int, data: object) -> None:
    FEED_LATENCY.observe(seconds)
    FEED_REQUESTS.labels(code=str(status_code)).inc()  # a handful of codes: bounded
    if not isinstance(data, dict):
        return
    if status_code == 200:
        FEED_RECORDS.labels(outcome="accepted").inc(int(data.get("accepted") or 0))
        FEED_RECORDS.labels(outcome="duplicate").inc(int(data.get("duplicates") or 0))
    elif data.get("errors"):
        bad = {e.get("index") for e in data["errors"] if isinstance(e, dict) and e.get("index") is not None}
        FEED_RECORDS.labels(outcome="rejected").inc(len(bad))


class FeedMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method != "POST" or not _FEED_PATH.match(request.path_info):
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        # DRF keeps the response body as data; a plain HttpResponse (a 503 from the database
        # middleware) has none and only counts as a request.
        feed_observe(
            seconds=time.perf_counter() - started,
            status_code=response.status_code,
            data=getattr(response, "data", None),
        )
        return response
