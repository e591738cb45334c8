"""Base classes for the API views: who may call them and how often."""

from rest_framework.views import APIView

from access.keys import FeedApiKey, ReadApiKey
from access.throttles import FeedRateThrottle, ReadRateThrottle

TRUE_VALUES = frozenset({"1", "true", "yes"})


class FeedApiView(APIView):
    """Writes: a key with can_feed (always when DEBUG is off), the feed rate limit."""

    permission_classes = [FeedApiKey]
    throttle_classes = [FeedRateThrottle]


class ReadApiView(APIView):
    """Reads: a key only when TFT_READ_REQUIRES_KEY is on, the read rate limit."""

    permission_classes = [ReadApiKey]
    throttle_classes = [ReadRateThrottle]

    def flag(self, name: str) -> bool:
        """A boolean query parameter such as ?servers=1."""
        return self.request.query_params.get(name, "").lower() in TRUE_VALUES
