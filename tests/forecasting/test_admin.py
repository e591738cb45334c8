"""The ModelVersion admin page shows the model's global variable importance (importance.json)."""

import shutil

import pytest

from forecasting.models import ModelVersion
from forecasting.registry import model_versions_sync
from tests.dashboard.conftest import _plain_static_storage  # noqa: F401 (autouse: admin pages need {% static %})

pytestmark = pytest.mark.django_db

DEFAULT = "tft_model_20261202T135112Z"


def _change_page(admin_client, name: str) -> str:
    model_versions_sync()
    version = ModelVersion.objects.get(name=name)
    response = admin_client.get(f"/admin/forecasting/modelversion/{version.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_model_page_shows_the_variable_importance_table(admin_client):
    page = _change_page(admin_client, DEFAULT)

    assert '<table id="variable-importance">' in page
    assert "<td>encoder</td><td>state</td>" in page


def test_a_model_folder_without_importance_still_opens_and_says_so(admin_client, settings, tmp_path):
    folder = tmp_path / "tft_model_20261201T000000Z"
    shutil.copytree(settings.TFT_MODELS_DIR / DEFAULT, folder)
    (folder / "importance.json").unlink()
    settings.TFT_MODELS_DIR = tmp_path

    page = _change_page(admin_client, folder.name)

    assert "has no importance.json" in page
