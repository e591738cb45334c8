from django.core.management.base import BaseCommand, CommandError

from forecasting.models import ModelVersion
from forecasting.registry import model_version_activate, model_versions_sync


class Command(BaseCommand):
    help = "Register the model folders in TFT_MODELS_DIR; --activate NAME makes one the active model."

    def add_arguments(self, parser):
        parser.add_argument("--activate", metavar="NAME", help="folder name to activate (operator's choice)")

    def handle(self, *args, activate, **options):
        versions = model_versions_sync()
        if activate:
            version = ModelVersion.objects.filter(name=activate).first()
            if version is None:
                raise CommandError(f"no model folder named {activate!r}")
            try:
                model_version_activate(version_id=version.pk)
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        for version in ModelVersion.objects.order_by("-created_at"):
            mark = "*" if version.is_active else " "
            state = "valid" if version.valid else f"INVALID: {version.error}"
            self.stdout.write(f"{mark} {version.name}  {state}")
        if not versions:
            self.stdout.write("no model folders found: train one with `python manage.py train_tft`")
