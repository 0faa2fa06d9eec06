"""The domain: produce batches, fund trails, projects and households.

Importing this package registers every domain entry kind (``ledger.rules``) and
projection table (``ledger.projection``); ``ledger.log`` and ``ledger.verify``
import it, so a log can never run with a partial set of rules.
"""

from __future__ import annotations

from ledger.domain import batches, funds, households, projects

__all__ = ["batches", "funds", "households", "projects"]
