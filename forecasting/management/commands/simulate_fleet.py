"""python manage.py simulate_fleet — the demo feeder: simulated fleet → POST /feed/data.

  --backfill 48h     post history ending now, in batches of --batch-size records
  --live             then post every --interval seconds until Ctrl-C or --duration
Both can be combined; the backfill and the live stream come from one continuous latent process.
Retries with backoff on 503 (honouring Retry-After), 429 and connection errors.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from forecasting.engine.simulator import fleet_names, records_from_truth, simulate_fleet_truth

logger = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
LIVE_BLOCK = timedelta(days=7)  # latent process simulated ahead in blocks of this length


def parse_duration(text: str) -> timedelta:
    """'48h', '30m', '2d', '90s' or plain seconds → timedelta."""
    match = _DURATION.match(text or "")
    if not match:
        raise CommandError(f"not a duration: {text!r} (use e.g. 48h, 30m, 2d)")
    return timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])


class Feeder:
    """Posts record batches to /feed/data with retries."""

    def __init__(self, url: str, api_key: str | None, *, timeout: float = 60.0, max_retries: int = 8):
        self.endpoint = url.rstrip("/") + "/feed/data"
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.posted_records = 0
        self.posted_batches = 0

    def post(self, records: list[dict]) -> dict:
        body = json.dumps({"records": records}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            request = urllib.request.Request(self.endpoint, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    payload = response.read()
                self.posted_records += len(records)
                self.posted_batches += 1
                try:
                    return json.loads(payload or b"{}")
                except ValueError:
                    return {}
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:500].decode(errors="replace")
                if exc.code not in (429, 502, 503, 504):
                    raise CommandError(f"POST {self.endpoint} → HTTP {exc.code}: {detail}") from exc
                wait = _retry_after(exc.headers.get("Retry-After"), delay)
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
                wait = delay
                reason = str(getattr(exc, "reason", exc))
            if attempt == self.max_retries:
                break
            logger.warning("POST failed (%s); retry %d/%d in %.1fs", reason, attempt + 1, self.max_retries, wait)
            time.sleep(wait)
            delay = min(delay * 2, 30.0)
        raise CommandError(f"POST {self.endpoint} failed after {self.max_retries} retries")


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, min(float(header), 120.0)) if header else default
    except ValueError:
        return default


class Command(BaseCommand):
    help = "Simulate the server fleet and post its metrics to /feed/data (backfill and/or live)."

    def add_arguments(self, parser):
        parser.add_argument("--servers", type=int, default=20, help="fleet size (default 20)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--backfill", default=None, help="history to post first, ending now (e.g. 48h)")
        parser.add_argument(
            "--backfill-interval",
            type=float,
            default=None,
            help="seconds between backfill records (default: --interval)",
        )
        parser.add_argument("--live", action="store_true", help="post records in real time")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between live records (default 5)")
        parser.add_argument("--duration", default=None, help="stop live mode after this long (e.g. 10m)")
        parser.add_argument("--url", default="http://localhost:8000")
        parser.add_argument("--api-key", default=None, help="sent as X-API-Key")
        parser.add_argument("--batch-size", type=int, default=5000, help="records per backfill request")
        parser.add_argument("--timeout", type=float, default=60.0, help="HTTP timeout per request (s)")

    def handle(self, *args, **opts):
        if not opts["backfill"] and not opts["live"]:
            raise CommandError("nothing to do: give --backfill DURATION and/or --live")
        if opts["interval"] <= 0 or (opts["backfill_interval"] is not None and opts["backfill_interval"] <= 0):
            raise CommandError("intervals must be positive")
        if opts["batch_size"] <= 0:
            raise CommandError("--batch-size must be positive")
        servers = fleet_names(opts["servers"])
        feeder = Feeder(opts["url"], opts["api_key"], timeout=opts["timeout"])
        seed = opts["seed"]
        now = datetime.now(UTC).replace(microsecond=0)
        backfill = parse_duration(opts["backfill"]) if opts["backfill"] else timedelta(0)
        duration = parse_duration(opts["duration"]) if opts["duration"] else None
        origin = now - backfill
        horizon = (
            min(duration, LIVE_BLOCK) if (opts["live"] and duration) else (LIVE_BLOCK if opts["live"] else timedelta(0))
        )
        truth = simulate_fleet_truth(
            servers=servers, start=origin, end=now + horizon + timedelta(minutes=10), seed=seed
        )
        logger.info("simulated %d servers from %s (seed %d)", len(servers), origin.isoformat(), seed)

        if backfill:
            self._backfill(
                feeder, truth, origin, now, opts["backfill_interval"] or opts["interval"], opts["batch_size"], seed
            )
        if opts["live"]:
            try:
                self._live(feeder, truth, servers, now, opts["interval"], duration, seed)
            except KeyboardInterrupt:
                logger.info("stopped by Ctrl-C")
        self.stdout.write(f"posted {feeder.posted_records} records in {feeder.posted_batches} requests")

    def _backfill(self, feeder, truth, start, end, interval, batch_size, seed):
        from tqdm import tqdm

        n_ticks = int(-(-(end - start).total_seconds() // interval))
        total = n_ticks * len(truth.windows)
        logger.info("backfill %s → %s every %gs: %d records", start.isoformat(), end.isoformat(), interval, total)
        pending: list[dict] = []
        with tqdm(total=total, unit="rec", desc="backfill", disable=None) as bar:
            for tick in records_from_truth(truth, start=start, end=end, interval_seconds=interval, seed=seed):
                pending.extend(tick)
                if len(pending) >= batch_size:
                    feeder.post(pending[:batch_size])
                    bar.update(batch_size)
                    pending = pending[batch_size:]
            while pending:
                feeder.post(pending[:batch_size])
                bar.update(len(pending[:batch_size]))
                pending = pending[batch_size:]

    def _live(self, feeder, truth, servers, start, interval, duration, seed):
        stop_at = start + duration if duration else None
        block_start = start
        block = 0
        last_log = time.monotonic()
        logger.info("live: posting every %gs%s", interval, f" for {duration}" if duration else " (Ctrl-C to stop)")
        while stop_at is None or block_start < stop_at:
            block_end = block_start + LIVE_BLOCK
            if stop_at is not None:
                block_end = min(block_end, stop_at)
            if block:  # a fresh latent block (a new seed per block keeps it deterministic)
                truth = simulate_fleet_truth(
                    servers=servers, start=block_start, end=block_end + timedelta(minutes=10), seed=seed + 7919 * block
                )
            pending: list[dict] = []
            for tick in records_from_truth(
                truth, start=block_start, end=block_end, interval_seconds=interval, seed=seed + block
            ):
                when = datetime.fromisoformat(tick[0]["timestamp"].replace("Z", "+00:00")).timestamp()
                wait = when - time.time()
                if wait > 0:
                    if pending:
                        feeder.post(pending)
                        pending = []
                    time.sleep(wait)
                    feeder.post(tick)
                else:  # behind schedule (e.g. after retries): catch up in few requests
                    pending.extend(tick)
                    if len(pending) >= 5000:
                        feeder.post(pending)
                        pending = []
                if time.monotonic() - last_log >= 60:
                    logger.info("live: %d records posted", feeder.posted_records + len(pending))
                    last_log = time.monotonic()
            if pending:
                feeder.post(pending)
            block_start = block_end
            block += 1
