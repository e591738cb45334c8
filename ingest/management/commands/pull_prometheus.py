"""python manage.py pull_prometheus --url http://prometheus:9090 [--backfill 24h] [--once]

Reads the contract's four metrics from a Prometheus with PromQL (node_exporter defaults; see
ingest/prometheus_pull.py for the mapping and rules) and stores them through the same validation and
idempotent ingest as POST /feed/data. With --backfill it first reads that span with range queries;
then it polls every --interval seconds until stopped (or exits after one pass with --once).
"""

import time
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseError

from ingest.contract import METRICS, STATES
from ingest.prometheus_poller import PullPoller
from ingest.prometheus_pull import (
    PrometheusError,
    PullConfig,
    load_mapping,
    parse_duration,
    prometheus_backfill,
)


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise CommandError(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


class Command(BaseCommand):
    help = "Feed records from a Prometheus server (node_exporter defaults), with optional backfill."

    def add_arguments(self, parser):
        parser.add_argument("--url", required=True, help="Prometheus base URL, e.g. http://prometheus:9090")
        parser.add_argument("--mapping", help="JSON file: queries, instances, states, defaults (all optional)")
        parser.add_argument("--instance", action="append", default=[], metavar="INSTANCE=SERVER",
                            help="instance label → server_name (repeatable)")
        parser.add_argument("--state", action="append", default=[], metavar="SERVER=STATE",
                            help="fixed state for a server instead of the derived one (repeatable)")
        parser.add_argument("--query", action="append", default=[], metavar="METRIC=PROMQL",
                            help=f"override a metric's PromQL ({', '.join(METRICS)}); $window, $histogram, $quantile")
        parser.add_argument("--default", action="append", default=[], metavar="METRIC=VALUE",
                            help="value for a metric with no series (e.g. latency_ms=0 without a histogram)")
        parser.add_argument("--label", default="instance", help="label that identifies a server (default instance)")
        parser.add_argument("--latency-histogram", default="http_request_duration_seconds",
                            help="histogram (in seconds) whose quantile is latency_ms")
        parser.add_argument("--latency-quantile", type=float, default=0.95)
        parser.add_argument("--rate-window", default="5m", help="rate() window (default 5m)")
        parser.add_argument("--backfill", help="read this span first with range queries, e.g. 24h")
        parser.add_argument("--step", default="5m", help="range query step (default 5m, the bucket size)")
        parser.add_argument("--interval", type=float, default=60.0, help="seconds between live polls (default 60)")
        parser.add_argument("--once", action="store_true", help="backfill (if asked) and one poll, then exit")
        parser.add_argument("--no-poll", action="store_true", help="backfill only")

    def handle(self, *args, **options):
        config = self._config(options)
        if options["backfill"]:
            try:
                span, step = parse_duration(options["backfill"]), parse_duration(options["step"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"backfilling {options['backfill']} from {config.url} every {options['step']}")
            try:
                total = prometheus_backfill(config=config, span=span, step=step, progress=self.stdout.write)
            except (PrometheusError, DatabaseError) as exc:  # at start-up: fail loudly, nothing half-read
                raise CommandError(f"backfill failed: {exc}") from exc
            self.stdout.write(self.style.SUCCESS(
                f"backfill done: {total.records} records, {len(total.servers)} servers, {total.accepted} accepted, "
                f"{total.duplicates} duplicates, {total.rejected} rejected, {total.skipped} incomplete"
            ))
        if options["no_poll"]:
            return
        interval = max(1.0, options["interval"])
        try:
            self._poll_forever(config, interval=interval, once=options["once"])
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    def _poll_forever(self, config: PullConfig, *, interval: float, once: bool) -> None:
        # Poll times are multiples of the interval: a restart re-reads the same instant. A failed
        # tick (Prometheus or the database down) is logged and retried with backoff; the next
        # good tick reads the instants it missed (ingest/prometheus_poller.py).
        poller = PullPoller(config=config, interval=max(1, round(interval)))
        while True:
            result = poller.tick(now=time.time())
            if result is None and once:
                raise CommandError(f"poll failed: {poller.last_error}")
            if result is not None:
                self.stdout.write(
                    f"poll {datetime.fromtimestamp(poller.last_stored, tz=UTC).isoformat()}: {result.records} "
                    f"records from {len(result.servers)} servers ({result.accepted} accepted, {result.duplicates} "
                    f"duplicates, {result.rejected} rejected, {result.skipped} incomplete)"
                )
            if once:
                return
            if result is None:
                time.sleep(poller.backoff_seconds())
            else:
                time.sleep(poller.interval - time.time() % poller.interval)

    def _config(self, options) -> PullConfig:
        mapping = {}
        if options["mapping"]:
            try:
                mapping = load_mapping(options["mapping"])
            except (OSError, ValueError) as exc:
                raise CommandError(str(exc)) from exc
        queries = {**mapping.get("queries", {}), **_pairs(options["query"], "--query")}
        states = {**mapping.get("states", {}), **_pairs(options["state"], "--state")}
        try:
            defaults = {k: float(v) for k, v in {**mapping.get("defaults", {}),
                                                 **_pairs(options["default"], "--default")}.items()}
        except ValueError as exc:
            raise CommandError(f"--default needs a number: {exc}") from exc
        for metric in (*queries, *defaults):
            if metric not in METRICS:
                raise CommandError(f"{metric!r} is not a contract metric ({', '.join(METRICS)})")
        for server, state in states.items():
            if state not in STATES:
                raise CommandError(f"state {state!r} for {server} is not one of {', '.join(STATES)}")
        try:
            parse_duration(options["rate_window"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return PullConfig(
            url=options["url"],
            queries=queries,
            instances={**mapping.get("instances", {}), **_pairs(options["instance"], "--instance")},
            states=states,
            defaults=defaults,
            label=options["label"],
            rate_window=options["rate_window"],
            latency_histogram=options["latency_histogram"],
            latency_quantile=options["latency_quantile"],
        )
