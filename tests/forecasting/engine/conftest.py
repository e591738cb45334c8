"""Engine tests run without a database: the engine imports no Django, so a test here that touched
the database would be testing something else. Marking one `django_db` fails its collection, and
any database access fails the test (pytest-django's blocker, held for the whole test)."""

import pytest


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here) and item.get_closest_marker("django_db"):
            raise pytest.UsageError(f"{item.nodeid}: engine tests may not use the database (move it to the app's tests)")


@pytest.fixture(autouse=True)
def _no_database(django_db_blocker):
    with django_db_blocker.block():
        yield
