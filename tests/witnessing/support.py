"""Helpers for the log-side witnessing tests: real witnesses over real HTTP.

:func:`running_witness` makes a witness with W1's own code (``WitnessStore.create``,
``trust``) and serves :func:`web.witness_app.create_witness_app` on 127.0.0.1 with
werkzeug's ``make_server`` in a thread, so the log's client (``ledger.witnessing``)
talks HTTP to the same app ``suyuan witness serve`` runs.  ``wrap`` puts a WSGI
middleware in front of it (to tamper with answers, or to count requests).
"""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server

from ledger.cosignature import CosignatureVerifier, parse_witness_vkey
from ledger.witness_store import WitnessStore
from web.witness_app import create_witness_app

PASSPHRASE = b"witness-test-passphrase"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class RunningWitness:
    name: str
    url: str
    vkey: str
    store: WitnessStore
    requests: list[bytes] = field(default_factory=list)  # bodies POSTed, in order

    @property
    def verifier(self) -> CosignatureVerifier:
        return parse_witness_vkey(self.vkey)


class Recorder:
    """WSGI middleware: keeps each request body, optionally rewrites each answer body."""

    def __init__(
        self,
        app: WSGIApp,
        seen: list[bytes],
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.app, self.seen, self.rewrite = app, seen, rewrite

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        self.seen.append(body)
        environ["wsgi.input"] = io.BytesIO(body)
        if self.rewrite is None:
            return self.app(environ, start_response)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        answer = b"".join(self.app(environ, capture))
        if captured["status"].startswith("200"):
            answer = self.rewrite(answer)
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(answer))))
        start_response(captured["status"], headers)
        return [answer]


@contextmanager
def serve_wsgi(app: WSGIApp) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="witness", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def make_witness(directory: Path, log_vkey: str, name: str) -> WitnessStore:
    store, _signer = WitnessStore.create(directory, name, PASSPHRASE)
    store.trust(log_vkey)
    return store


@contextmanager
def running_witness(
    directory: Path,
    log_vkey: str,
    name: str = "witness.audit.example/w1",
    *,
    rewrite: Callable[[bytes], bytes] | None = None,
    store: WitnessStore | None = None,
) -> Iterator[RunningWitness]:
    """A witness trusting ``log_vkey`` served over HTTP; yields its URL, vkey and store."""
    if store is None:
        store = make_witness(directory, log_vkey, name)
    app = create_witness_app(directory, PASSPHRASE, {"TESTING": True})
    seen: list[bytes] = []
    with serve_wsgi(Recorder(app, seen, rewrite)) as url:
        yield RunningWitness(store.name, url, store.vkey, store, seen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def flip_signature(answer: bytes, index: int = 40) -> bytes:
    """A cosignature line with one bit of its signature changed (still well formed)."""
    text = answer.decode()
    lines = []
    for line in text.splitlines(keepends=True):
        head, _, b64 = line.rstrip("\n").rpartition(" ")
        raw = bytearray(base64.b64decode(b64))
        raw[index] ^= 0x01
        lines.append(f"{head} {base64.b64encode(bytes(raw)).decode()}\n")
    return "".join(lines).encode()
