"""The stand-in marketplace of the app-side tests (tests/helpers/fake_marketplace.py) checked
itself, so that "no hit" elsewhere means something."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.fake_marketplace import (
    FakeMarketplace,
)

# --- the stand-in itself ------------------------------------------------------------------------


@pytest.fixture
def market() -> Iterator[FakeMarketplace]:
    with FakeMarketplace() as server:
        yield server


def test_the_stand_in_records_every_hit_and_serves_its_routes(market: FakeMarketplace) -> None:
    market.serve("/x", {"a": 1})
    assert httpx.get(market.url + "/x", timeout=5).json() == {"a": 1}
    assert httpx.get(market.url + "/y", timeout=5).status_code == 404
    market.serve("/x", b"not json", status=500)
    assert httpx.get(market.url + "/x", timeout=5).status_code == 500
    assert market.hits == ["/x", "/y", "/x"]
    assert market.count("/x") == 2


def test_a_stopped_stand_in_refuses_connections(market: FakeMarketplace) -> None:
    market.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(market.url + "/x", timeout=5)
