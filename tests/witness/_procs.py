"""Child-process entry points for the witness concurrency tests (kept light to import)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ledger.witness_store import WitnessStore


def submit(directory: str, passphrase: bytes, body: bytes, barrier: Any, out: Any) -> None:
    """Open the witness like a separate server process would, wait for the others, submit."""
    store = WitnessStore.open(Path(directory))
    signer = store.signer(passphrase)
    barrier.wait()
    out.put(store.submit(body, signer).status)
