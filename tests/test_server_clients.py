"""The site's client list and the per-worker share of the per-client rate limit (pure, a fake clock)."""

from __future__ import annotations

import pytest

from server.clients import ClientLimiter, SiteClients


def test_site_clients_hold_addresses_and_networks() -> None:
    site = SiteClients("127.0.0.1, 10.1.0.0/16,::1")
    assert "127.0.0.1" in site and "::1" in site and "10.1.200.3" in site
    assert "127.0.0.2" not in site and "10.2.0.1" not in site
    assert "not-an-address" not in site


def test_a_bad_site_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.300'"):
        SiteClients("127.0.0.1,10.0.0.300")


def test_each_worker_allows_its_share_so_the_service_never_exceeds_the_rate() -> None:
    now = [0.0]
    workers = [ClientLimiter(SiteClients("127.0.0.1"), 4.0, 8, workers=2, clock=lambda: now[0]) for _ in "ab"]
    # burst 8 over two workers: 4 each, then a token every 1/(4/2) = 0.5 s per worker
    allowed = sum(w.wait("198.51.100.1") == 0.0 for w in workers for _ in range(10))
    assert allowed == 8
    assert workers[0].wait("198.51.100.1") == pytest.approx(0.5)
    now[0] = 10.0  # 10 s later: each worker refilled to its burst, not beyond
    allowed = sum(w.wait("198.51.100.1") == 0.0 for w in workers for _ in range(10))
    assert allowed == 8


def test_the_site_and_a_zero_rate_are_never_limited() -> None:
    limited = ClientLimiter(SiteClients("127.0.0.1"), 1.0, 1)
    assert all(limited.wait("127.0.0.1") == 0.0 for _ in range(100))
    unlimited = ClientLimiter(SiteClients(""), 0.0, 1)
    assert all(unlimited.wait("198.51.100.1") == 0.0 for _ in range(100))
