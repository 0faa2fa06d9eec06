"""The domain queries, registered in ``ledger.queries`` for the CLI and the API."""

from __future__ import annotations
