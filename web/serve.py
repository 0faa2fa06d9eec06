"""Running the app under gunicorn (``suyuan serve``)."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from web import create_app

        return create_app()


def run_gunicorn(host: str, port: int, workers: int | None) -> None:
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    _Gunicorn(
        {
            "bind": f"{host}:{port}",
            "workers": workers or 2 * cores,
            "worker_class": "gthread",
            "threads": 4,
            "accesslog": os.environ.get("SUYUAN_ACCESS_LOG", "-") or None,
            "timeout": 60,
            "preload_app": False,
        }
    ).run()
