"""Who asks for lists: a request's client, whether it is the site's own, and its rate limit.

A client is its network address: the peer's, or, behind ``MOVIEREC_SERVER_PROXIES`` trusted proxies,
the one they name in ``X-Forwarded-For`` (Sanic's ``remote_addr``). Nothing a client chooses to send
(a user agent, a client id) identifies it: a scraper would change it. The site's request client
(``MOVIEREC_SERVER_SITE_CLIENTS``: addresses or networks) is never limited; every other client gets
a token bucket of ``MOVIEREC_SERVER_CLIENT_BURST`` requests refilled at
``MOVIEREC_SERVER_CLIENT_RATE`` per second.

The buckets live in each worker (no shared state, no lock on the request path). Each of the W
workers allows a client rate/W and burst/W, so a client never gets more than the stated rate from
the whole service; one that keeps a single connection (it stays with one worker) gets rate/W.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

from movierec.ratelimit import TokenBuckets
from movierec.settings import Settings

MEMO_LIMIT = 10_000  # addresses whose site membership is remembered (then the memo starts over)


class SiteClients:
    """The site's own client addresses: exact addresses and networks, from a comma-separated list."""

    def __init__(self, spec: str) -> None:
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            try:
                self.networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"MOVIEREC_SERVER_SITE_CLIENTS: {part!r} is no address or network") from None
        # the common case, one address per entry: a set lookup of the text, no parsing per request
        self.exact = frozenset(str(n.network_address) for n in self.networks if n.num_addresses == 1)
        self._memo: dict[str, bool] = {}

    def __contains__(self, address: str) -> bool:
        if address in self.exact:
            return True
        known = self._memo.get(address)
        if known is None:
            known = self._in_networks(address)
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            self._memo[address] = known
        return known

    def _in_networks(self, address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address)
        except ValueError:  # not an address (a unix socket, a proxy's odd header): not the site
            return False
        return any(parsed in network for network in self.networks)


class ClientLimiter:
    """This worker's share of the per-client rate limit on ``/recommend``."""

    def __init__(
        self,
        site: SiteClients,
        rate: float,
        burst: int,
        workers: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.site = site
        workers = max(1, workers)
        self.buckets = TokenBuckets(rate / workers, max(1.0, burst / workers), clock) if rate > 0 else None

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimiter:
        return cls(
            SiteClients(settings.server_site_clients),
            settings.server_client_rate,
            settings.server_client_burst,
            settings.server_workers,
        )

    def wait(self, client: str) -> float:
        """0.0: answer ``client`` now; else the seconds until it may ask again."""
        if self.buckets is None or client in self.site:
            return 0.0
        return self.buckets.take(client)
