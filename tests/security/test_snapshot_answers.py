"""An answer built from several reads describes one state of the ledger.

The fund trail of a household reads its totals, then its payments: a payment committed by
another writer between the two (PostgreSQL gives every statement a fresh snapshot) made the
totals disagree with the list, which to an auditor looks like money unaccounted for.  The
query runs in one snapshot (``ledger.db.read_snapshot``); this drives the other writer's
commit into exactly that gap.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger.domain import fund_queries
from tests.security.test_nothing_lost import ApiSite


def test_a_household_trail_read_during_a_payment_adds_up(
    api: ApiSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.world.pay("D-1", "A-1", 30_000)
    paid_between: list[int] = []
    page = fund_queries.disbursements

    def pay_then_page(*args: Any, **kwargs: Any) -> Any:
        if not paid_between:  # the totals were read; the list of payments is read next
            paid_between.append(api.world.pay("D-2", "A-1", 20_000, period="2020").seq)
        return page(*args, **kwargs)

    monkeypatch.setattr(fund_queries, "disbursements", pay_then_page)
    response = api.client.get("/api/v1/funds/trail?household=HH-0001")
    assert response.status_code == 200, response.get_data(as_text=True)
    trail = response.get_json()
    assert paid_between, "the other writer's payment was made mid-query"
    listed = trail["disbursements"]
    assert trail["totals"] == {
        "count": len(listed),
        "amount_fen": sum(d["amount_fen"] for d in listed),
    }
    assert [d["id"] for d in listed] == ["D-1"]  # the state the query started from

    monkeypatch.undo()
    again = api.client.get("/api/v1/funds/trail?household=HH-0001").get_json()
    assert again["totals"] == {"count": 2, "amount_fen": 50_000}
