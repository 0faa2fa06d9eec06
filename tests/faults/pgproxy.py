"""A unix-socket proxy in front of the test PostgreSQL cluster that can cut a COMMIT.

``CommitCutter(cluster)`` listens on ``<dir>/.s.PGSQL.<port>`` and relays every
connection to the cluster's own socket byte for byte.  Armed, it cuts the next
connection that commits, in one of two places:

``"request"``
    the client's ``COMMIT`` is never forwarded: the server sees the client vanish
    mid-transaction and rolls back;
``"reply"``
    the ``COMMIT`` is forwarded and the server's ``CommandComplete "COMMIT"``
    reply — sent only once the commit is durable (``synchronous_commit = on``) — is
    dropped: the transaction is stored, and the client never hears so.

Either way the client sees the connection close while it waits for its COMMIT to
be answered: the same error, two different truths.  That is what a writer meets
when a network path or a server dies at the worst moment.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from sqlalchemy import make_url

from tests.pgcluster import PgCluster

_COMMIT_QUERY = b"COMMIT\x00"  # the query text, in a Query (simple) or Parse message
_COMMIT_DONE = b"C\x00\x00\x00\x0bCOMMIT\x00"  # CommandComplete, length 4 + 7


def _ends_in(marker: bytes, tail: bytes, data: bytes) -> bool:
    """``marker`` occurs in ``tail + data`` and ends inside ``data`` (a marker may straddle
    two reads, but one wholly in the previous read was seen then)."""
    return (tail + data).find(marker, max(0, len(tail) - len(marker) + 1)) >= 0


class CommitCutter:
    def __init__(self, cluster: PgCluster) -> None:
        assert cluster.socket_dir is not None
        self.upstream = str(cluster.socket_dir / f".s.PGSQL.{cluster.port}")
        self.port = cluster.port
        self.dir = Path(tempfile.mkdtemp(prefix="sypx-", dir="/tmp"))
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.dir / f".s.PGSQL.{self.port}"))
        self.listener.listen(64)
        self.mode: str | None = None
        self.cut = threading.Event()  # set when a connection was cut
        self._lock = threading.Lock()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, direct_url: str) -> str:
        """``direct_url`` (a URL of the cluster) through this proxy."""
        return (
            make_url(direct_url)
            .update_query_dict({"host": str(self.dir)})
            .render_as_string(hide_password=False)
        )

    def arm(self, mode: str) -> None:
        assert mode in ("request", "reply")
        self.cut.clear()
        self.mode = mode

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- relaying ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self.upstream)
            except OSError:
                client.close()
                server.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            pair = (client, server)
            threading.Thread(
                target=self._pump, args=(client, server, pair, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, pair, False), daemon=True
            ).start()

    def _take(self, mode: str) -> bool:
        """True (once) if the proxy is armed for ``mode``."""
        with self._lock:
            if self.mode == mode:
                self.mode = None
                return True
            return False

    def _pump(
        self,
        source: socket.socket,
        sink: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        to_server: bool,
    ) -> None:
        tail = b""  # the end of the previous chunk: a marker may straddle two reads
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                marker = _COMMIT_QUERY if to_server else _COMMIT_DONE
                seen = _ends_in(marker, tail, data)
                tail = (tail + data)[-16:]
                # (``cut`` is set before the sockets close: the client learns of it no sooner.)
                if seen and self._take("request" if to_server else "reply"):
                    # request: the COMMIT is never sent, the server rolls back;
                    # reply: committed on the server, the client never hears.
                    self.cut.set()
                    break
                sink.sendall(data)
        except OSError:
            pass
        # One side ended (or was cut): end the other too, as a dead network path would.
        for s in pair:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        with self._lock:
            for s in pair:
                if s in self._sockets:
                    self._sockets.remove(s)
