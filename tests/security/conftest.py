"""One hostile site for the security tests (tests/security/sitekit.py), built once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.sitekit import Hostile, hostile_site


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    with hostile_site(tmp_path_factory.mktemp("hostile")) as made:
        yield made
