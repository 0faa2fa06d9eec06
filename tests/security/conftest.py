"""Sites for the security tests: one hostile site (tests/security/sitekit.py), built once per
session, and ``api``, a fresh API site on each engine (tests/security/test_nothing_lost.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.sitekit import Hostile, hostile_site
from tests.security.test_nothing_lost import ENGINES, ApiSite, _url, make_api_site


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_site(tmp_path_factory.mktemp("hostile")) as made:
        yield made


@pytest.fixture(params=ENGINES)
def api(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ApiSite]:
    made = make_api_site(tmp_path, _url(request, tmp_path), monkeypatch)
    yield made
    made.app.extensions["suyuan"]["instance"].engine.dispose()
    made.instance.engine.dispose()
