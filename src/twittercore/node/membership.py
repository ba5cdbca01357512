"""Who the nodes are: node index -> (URL, incarnation), merged by gossip with no central directory.

A user's home is in its id (``node_index << 40 | n``), so finding a user's
node needs only the index -> URL map; this module keeps it.  Each entry has
an *incarnation*: a node's own is a counter in its store, raised every time
it starts, so the newest announcement of a node wins everywhere, also when
it comes back at another address.  Merging is a join on a semilattice
(per index, the higher incarnation; at equal incarnations the smaller URL,
so every node settles on the same entry whatever order it hears them in),
which is why push-pull gossip with any peer converges.

Entries given by ``--peers`` enter at incarnation 0, below anything a
running node announces.  Two nodes claiming one index at one incarnation
with different URLs are a *conflict*: counted, and refused when the claimant
is the one joining (``/node/v1/members`` answers 409), so a second node
started with a taken index does not come up.

>>> m = Membership(2, "http://b", 3, {1: Member("http://a", 0)})
>>> m.merge({1: Member("http://a2", 5), 3: Member("http://c", 1)})
([1, 3], [])
>>> m.peers()
{1: 'http://a2', 3: 'http://c'}
>>> m.merge({2: Member("http://elsewhere", 3)})  # someone claims our index
([], [2])

Runtime complexity: O(n) per merge for n members.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from .chain import MAX_NODES

__all__ = ["Member", "Membership"]


@dataclass(frozen=True)
class Member:
    url: str
    incarnation: int


class Membership:
    def __init__(self, own: int, own_url: str | None, own_incarnation: int, members: dict[int, Member]) -> None:
        self.own, self.own_url, self.own_incarnation = own, own_url, own_incarnation
        self.members = {i: m for i, m in members.items() if i != own}
        self.conflicts = 0

    def peers(self) -> dict[int, str]:
        return {i: m.url for i, m in sorted(self.members.items())}

    def merge(self, incoming: dict[int, Member]) -> tuple[list[int], list[int]]:
        """Fold ``incoming`` in; returns (indices whose entry changed, indices refused as conflicts)."""
        changed, refused = [], []
        for index, member in sorted(incoming.items()):
            if index == self.own:
                if member.url != self.own_url and member.incarnation >= self.own_incarnation:
                    refused.append(index)
                continue
            known = self.members.get(index)
            if known is None or member.incarnation > known.incarnation:
                self.members[index] = member
                changed.append(index)
            elif member.incarnation == known.incarnation and member.url != known.url:
                refused.append(index)
                if member.url < known.url:  # one winner everywhere, whatever the order of arrival
                    self.members[index] = member
                    changed.append(index)
        self.conflicts += len(refused)
        return changed, refused

    def to_wire(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {str(i): [m.url, m.incarnation] for i, m in self.members.items()}
        if self.own_url is not None:
            out[str(self.own)] = [self.own_url, self.own_incarnation]
        return out

    @staticmethod
    def from_wire(obj: Any) -> dict[int, Member]:
        """Parse and check a gossiped member list: ``{"index": [url, incarnation]}``."""
        if not isinstance(obj, dict) or len(obj) > MAX_NODES:
            raise InvalidArgumentError("node: members: expected an object of at most MAX_NODES entries")
        out = {}
        for key, value in obj.items():
            try:
                index = int(key)
                url, incarnation = value
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"node: members: entry {key!r}: expected index: [url, incarnation]"
                ) from None
            if (
                not 1 <= index <= MAX_NODES
                or not isinstance(url, str)
                or not url.startswith(("http://", "https://"))
                or not isinstance(incarnation, int)
                or isinstance(incarnation, bool)
                or incarnation < 0
            ):
                raise InvalidArgumentError(f"node: members: entry {key!r}: bad index, URL or incarnation")
            out[index] = Member(url.rstrip("/"), incarnation)
        return out
