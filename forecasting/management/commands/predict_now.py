import json

from django.core.management.base import BaseCommand, CommandError

from forecasting.registry import model_versions_sync
from forecasting.runs.chunks import fleet_predict


class Command(BaseCommand):
    help = "Run one fleet prediction synchronously (same service as the scheduled task) and print its summary."

    def add_arguments(self, parser):
        parser.add_argument("--chunk-size", type=int, default=None)
        parser.add_argument("--json", action="store_true", help="print the summary as JSON")

    def handle(self, *args, chunk_size, **options):
        model_versions_sync()
        run = fleet_predict(chunk_size=chunk_size)
        if run is None:
            raise CommandError("another prediction run is in progress; try again when it has finished")
        summary = {
            "run_id": run.pk,
            "status": run.status,
            "servers": run.servers,
            "tft": run.tft_count,
            "heuristic": run.fallback_count,
            "fallback_reasons": run.fallback_reasons,
            "model_version": run.model_name or None,
            "device": run.device,
            "seconds": run.duration_seconds,
            "durations": run.durations,
            "environment": run.environment,
        }
        if options["json"]:
            self.stdout.write(_dumps(summary))
            return
        self.stdout.write(
            f"run {run.pk} {run.status}: {run.servers} servers ({run.tft_count} TFT, {run.fallback_count} heuristic) "
            f"in {summary['seconds']:.2f}s with {summary['model_version'] or 'no model'} on {run.device or 'cpu'}"
        )
        self.stdout.write("phases: " + ", ".join(f"{k} {v:.3f}s" for k, v in run.durations.items()))
        if run.fallback_reasons:
            self.stdout.write(f"fallback reasons: {run.fallback_reasons}")
        env = run.environment
        if env:
            self.stdout.write(
                f"fleet: {env['fleet_health']}, prob_30m {env['prob_30m']:.2f}, prob_8h {env['prob_8h']:.2f}, "
                f"high-risk servers {env['high_risk_servers']}/{env['total_servers']}"
            )


def _dumps(data) -> str:
    return json.dumps(data, indent=2, default=str)
