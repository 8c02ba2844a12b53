"""The load balancer between the simulated Twilio and the edges of one public URL.

In production the edges sit behind one public name (PUBLIC_BASE_URL) and a load balancer; Twilio
only ever sees that name. On loopback there is no balancer process: the simulated Twilio is given the
edges' addresses for the public URL and does the balancer's job itself, as a health-checking one
would, and nothing more:
- each socket or request goes to the edge that served the call's last one while that edge is up (a
  balancer with per-call affinity), else to the next edge in the list, in turn. Affinity matters only
  without REST credentials, where an agent's hang-up is the edge closing the stream and only that
  edge knows it ended the call; with them, Twilio reports the call completed to any edge
  (docs/failover.md#edge-dies);
- an edge whose port refuses the connection (its process is gone) is skipped, at once: the request
  goes to the next one. Nothing else is retried: an edge that answers, answers for the call.

`addresses` is read at every attempt, so a list the caller of the stack keeps current (a replaced edge
in, a killed one out) is what the balancer sees.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = ["AllEdgesDown", "EdgePool", "fixed", "routed"]

T = TypeVar("T")


class AllEdgesDown(OSError):
    """No edge behind the public URL accepted the connection."""


def routed(url: str, address: str) -> str:
    """`url` sent to the backend `address` ("host:port"): the same scheme, path and query."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, address, parts.path, parts.query, parts.fragment))


class EdgePool:
    """The backends of one public URL for one call: `addresses()` lists the edges ("host:port")."""

    def __init__(self, addresses: Callable[[], Sequence[str]], first: int = 0) -> None:
        self._addresses = addresses
        self._next = first
        self.current: str | None = None  # the edge that served the call's last socket or request

    def order(self) -> list[str]:
        """The edges to try, in order: the call's current edge first, then the rest from the next one."""
        edges = list(self._addresses())
        if not edges:
            return []
        start = self._next % len(edges)
        rotated = edges[start:] + edges[:start]
        if self.current in rotated:
            rotated.remove(self.current)
            rotated.insert(0, self.current)
        return rotated

    async def reach(self, url: str, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(routed url)` on each edge in turn until one accepts the connection."""
        refused: list[str] = []
        for address in self.order():
            try:
                result = await attempt(routed(url, address))
            except ConnectionRefusedError:
                refused.append(address)
                self._next += 1
                continue
            self.current = address
            return result
        raise AllEdgesDown(f"no edge accepted {url} (refused: {', '.join(refused) or 'no edges'})")


def fixed(addresses: Sequence[str]) -> Callable[[], Sequence[str]]:
    """A list of edges that does not change, as `EdgePool` reads them."""
    edges = tuple(addresses)
    return lambda: edges
