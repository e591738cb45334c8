"""``manage.py model_importance FOLDER --csv-dir data/nab``: global variable importance of a model
folder trained before training recorded it (importance.json and the MODEL_CARD table)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from forecasting.engine.folders import ModelFolderError
from forecasting.engine.series import load_csv_dir
from forecasting.engine.training import folder_importance


class Command(BaseCommand):
    help = "Compute a model folder's variable importance over the validation part of CSV series."

    def add_arguments(self, parser):
        parser.add_argument("folder", help="model folder name under TFT_MODELS_DIR, or a path")
        parser.add_argument("--csv-dir", required=True, type=Path, help="CSV folder (NAB layout or contract)")
        parser.add_argument("--csv-fraction", type=float, default=0.6,
                            help="the part of each series the model was trained on (train_tft --csv-fraction)")
        parser.add_argument("--val-fraction", type=float, default=0.2,
                            help="the validation tail of that part (train_tft's time-based split)")

    def handle(self, *args, folder, csv_dir, csv_fraction, val_fraction, **options):
        path = Path(folder) if Path(folder).is_dir() else settings.TFT_MODELS_DIR / folder
        series = load_csv_dir(csv_dir, fraction=csv_fraction).series
        source = (f"validation windows: last {val_fraction:.0%} of the first {csv_fraction:.0%} of the "
                  f"{len(series)} series in {csv_dir}")
        try:
            importance = folder_importance(path, series, val_fraction, source)
        except (ModelFolderError, FileNotFoundError) as exc:
            raise CommandError(str(exc)) from exc
        top = importance["variables"]["encoder"][:3]
        self.stdout.write(f"{path.name}: {importance['windows']} windows; encoder "
                          + ", ".join(f"{v['name']} {v['weight']:.3f}" for v in top))
