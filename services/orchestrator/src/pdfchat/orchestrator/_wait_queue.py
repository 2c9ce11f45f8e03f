"""The order in which one replica's waiting callers get capacity: fair across tenants, interactive first.

Each tenant has its own FIFO queue per priority class. Interactive waiters are served before batch ones;
within a class the tenants with waiters take turns (round-robin: after a tenant is served it goes to the
back of the rotation), so a tenant that queued 500 requests before the others arrived gets one admission
per turn like everyone else instead of the whole next window. A tenant held back by its own limit is set
aside until that limit frees (`block`), so it never stalls the tenants behind it.

A plain data structure (no Redis, no asyncio): the limiter's dispatcher drives it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Class(Generic[T]):
    queues: dict[str, deque[T]] = field(default_factory=dict)
    rotation: deque[str] = field(default_factory=deque)
    blocked_until: dict[str, float] = field(default_factory=dict)


class FairWaitQueue(Generic[T]):
    def __init__(self) -> None:
        self._classes: dict[bool, _Class[T]] = {True: _Class(), False: _Class()}
        self._where: dict[int, tuple[str, bool]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def waiting(self, *, interactive: bool) -> int:
        return sum(len(q) for q in self._classes[interactive].queues.values())

    def items(self) -> list[T]:
        """Every waiter, in no particular order."""
        return [item for cls in self._classes.values() for queue in cls.queues.values() for item in queue]

    def push(self, item: T, tenant: str, *, interactive: bool) -> None:
        cls = self._classes[interactive]
        queue = cls.queues.get(tenant)
        if queue is None:
            queue = cls.queues[tenant] = deque()
            cls.rotation.append(tenant)
        queue.append(item)
        self._where[id(item)] = (tenant, interactive)

    def remove(self, item: T) -> None:
        """Takes `item` out wherever it is (a waiter that gave up); a no-op for one already gone."""
        where = self._where.pop(id(item), None)
        if where is None:
            return
        tenant, interactive = where
        cls = self._classes[interactive]
        queue = cls.queues[tenant]
        queue.remove(item)
        if not queue:
            self._drop_tenant(cls, tenant)

    def served(self, item: T) -> None:
        """`item` got its capacity: it leaves, and its tenant goes to the back of the rotation."""
        where = self._where.pop(id(item), None)
        if where is None:
            return
        tenant, interactive = where
        cls = self._classes[interactive]
        cls.queues[tenant].remove(item)
        cls.rotation.remove(tenant)
        if cls.queues[tenant]:
            cls.rotation.append(tenant)
        else:
            del cls.queues[tenant]
            cls.blocked_until.pop(tenant, None)

    def block(self, tenant: str, until: float, *, interactive: bool) -> None:
        """Sets `tenant`'s waiters of the class aside until `until` (its own limit is exhausted)."""
        self._classes[interactive].blocked_until[tenant] = until

    def candidates(self, now: float) -> list[T]:
        """The head waiter of each tenant not set aside, in the order they should be tried."""
        heads: list[T] = []
        for interactive in (True, False):
            cls = self._classes[interactive]
            for tenant in cls.rotation:
                if cls.blocked_until.get(tenant, 0.0) > now:
                    continue
                heads.append(cls.queues[tenant][0])
        return heads

    def next_unblock(self) -> float | None:
        """When the earliest set-aside tenant may be tried again (None when none is set aside)."""
        times = [t for cls in self._classes.values() for t in cls.blocked_until.values()]
        return min(times) if times else None

    @staticmethod
    def _drop_tenant(cls: _Class[T], tenant: str) -> None:
        del cls.queues[tenant]
        cls.rotation.remove(tenant)
        cls.blocked_until.pop(tenant, None)
