"""Production settings that need no server: read URL, engine options, proxies (no PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Response, jsonify, request
from sqlalchemy import Engine

from ledger.config import Settings
from ledger.db import PG_CONNECT_DEFAULTS, PG_POOL_RECYCLE, make_engine
from ledger.errors import ConfigError
from ledger.instance import Instance
from tests.helpers import TEST_CONFIG, env_for

PG = "postgresql+psycopg://u@/db?host=/tmp/nowhere&port=1"


def test_the_read_url_is_optional_and_separate(tmp_path: Path) -> None:
    env = env_for(tmp_path, "sqlite:///" + str(tmp_path / "a.db"))
    plain = Settings.from_env(env)
    assert plain.read_database_url is None
    both = Settings.from_env({**env, "SUYUAN_READ_DATABASE_URL": PG})
    assert both.read_database_url == PG and both.database_url.startswith("sqlite")
    assert Settings.from_env({**env, "SUYUAN_READ_DATABASE_URL": ""}).read_database_url is None

    one = Instance(plain, env)
    assert one.read_engine is one.engine and not one.replicated
    two = Instance(both, env)
    try:
        assert two.replicated and two.read_engine is not two.engine
        assert two.read_engine.url.render_as_string() == make_engine(PG).url.render_as_string()
        assert two.engine.dialect.name == "sqlite"
    finally:
        one.dispose()
        two.dispose()


def test_postgres_engines_recycle_ping_and_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, object]] = []
    import sqlalchemy

    real = sqlalchemy.create_engine

    def spy(url: str, **kwargs: object) -> Engine:
        seen.append(kwargs)
        return real(url, **kwargs)

    monkeypatch.setattr("ledger.db.create_engine", spy)
    engine = make_engine(PG)
    engine.dispose()
    (options,) = seen
    assert options["pool_pre_ping"] is True
    assert options["pool_recycle"] == PG_POOL_RECYCLE
    args = options["connect_args"]
    assert isinstance(args, dict)
    assert args["connect_timeout"] == 10 and args["keepalives"] == 1
    assert args["tcp_user_timeout"] == 30_000 and args["application_name"] == "suyuan"
    assert set(args) == set(PG_CONNECT_DEFAULTS)

    # A libpq parameter in the URL wins over the default (the URL is the operator's word).
    seen.clear()
    make_engine(PG + "&connect_timeout=3&application_name=replica-reader").dispose()
    (options,) = seen
    args = options["connect_args"]
    assert isinstance(args, dict)
    assert "connect_timeout" not in args and "application_name" not in args
    assert args["keepalives_idle"] == 30


@pytest.mark.parametrize(
    ("hops", "headers", "address", "scheme"),
    [
        (
            None,
            {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
            "10.0.0.2",
            "http",
        ),
        (
            "1",
            {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
            "203.0.113.7",
            "https",
        ),
        # One trusted hop: a client's own X-Forwarded-For entry (spoofed) is not believed.
        ("1", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}, "203.0.113.7", "http"),
        ("2", {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}, "198.51.100.1", "http"),
    ],
)
def test_proxy_hops_decide_whose_address_and_scheme_count(
    site_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    hops: str | None,
    headers: dict[str, str],
    address: str,
    scheme: str,
) -> None:
    from web import create_app

    for name, value in site_env.items():
        monkeypatch.setenv(name, value)
    if hops is not None:
        monkeypatch.setenv("SUYUAN_PROXY_HOPS", hops)
    app = create_app(TEST_CONFIG)

    @app.get("/_whoami")
    def whoami() -> Response:
        return jsonify(address=request.remote_addr, scheme=request.scheme)

    answer = app.test_client().get(
        "/_whoami", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.2"}
    )
    assert answer.get_json() == {"address": address, "scheme": scheme}


@pytest.mark.parametrize("bad", ["-1", "many", "11"])
def test_a_bad_proxy_hops_setting_is_refused(
    site_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    from web import create_app

    for name, value in site_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SUYUAN_PROXY_HOPS", bad)
    with pytest.raises(ConfigError, match="SUYUAN_PROXY_HOPS must be the number of reverse"):
        create_app(TEST_CONFIG)


@pytest.fixture
def site_env(tmp_path: Path) -> dict[str, str]:
    env = env_for(tmp_path / "instance")
    return {k: v for k, v in env.items() if k.startswith("SUYUAN_")}
