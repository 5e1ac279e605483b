"""The bounded hand-off between the MQTT network thread and the core worker.

The network thread must never block (a blocked paho loop misses keep-alives and PUBACKs), so
`put` never waits: when the queue is full by count or by bytes it drops one message by the
configured policy and counts the drop. Decoding happens on the consumer side.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

DropPolicy = Literal["drop_oldest", "drop_newest"]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """What the network thread saw: undecoded, stamped with the agent's receive time."""

    topic: str
    payload: bytes
    received_ns: int
    user_properties: tuple[tuple[str, str], ...] = field(default=())


class Intake:
    """Bounded FIFO by message count and payload bytes; counted drops; `put` never blocks."""

    def __init__(
        self,
        max_messages: int = 2_000,
        max_bytes: int = 64 * 1024 * 1024,
        policy: DropPolicy = "drop_oldest",
        on_drop: Callable[[RawMessage], None] | None = None,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"intake max_messages={max_messages}: must be >= 1")
        if max_bytes < 1:
            raise ValueError(f"intake max_bytes={max_bytes}: must be >= 1")
        if policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"intake policy={policy!r}: expected 'drop_oldest' or 'drop_newest'")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.policy = policy
        self._on_drop = on_drop
        self._items: deque[RawMessage] = deque()
        self._bytes = 0
        self._dropped = 0
        self._accepted = 0
        self._closed = False
        self._ready = threading.Condition(threading.Lock())

    # ---- producer (network thread) ----
    def put(self, message: RawMessage) -> bool:
        """Enqueue without blocking; returns False if `message` itself was dropped."""
        dropped: list[RawMessage] = []
        with self._ready:
            if self._closed:
                return False
            size = len(message.payload)
            if size > self.max_bytes or (self.policy == "drop_newest" and self._over(size)):
                dropped.append(message)
            else:
                while self._over(size):  # drop_oldest: make room for the newest data
                    old = self._items.popleft()
                    self._bytes -= len(old.payload)
                    dropped.append(old)
                self._items.append(message)
                self._bytes += size
                self._accepted += 1
                self._ready.notify()
            self._dropped += len(dropped)
        # Callbacks run outside the lock: they may log or touch metrics.
        if self._on_drop is not None:
            for old in dropped:
                self._on_drop(old)
        return not dropped or dropped[-1] is not message

    def _over(self, incoming_bytes: int) -> bool:
        return bool(self._items) and (
            len(self._items) >= self.max_messages or self._bytes + incoming_bytes > self.max_bytes
        )

    # ---- consumer (core worker) ----
    def get_batch(self, max_items: int = 256, timeout: float | None = None) -> list[RawMessage]:
        """Up to `max_items` messages; waits up to `timeout` s for the first one ([] on timeout or close)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._items and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return []
                self._ready.wait(remaining)
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            self._bytes -= sum(len(m.payload) for m in batch)
            return batch

    def close(self) -> None:
        """Wake the consumer; later puts are refused (not counted as drops)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    # ---- observation ----
    @property
    def depth(self) -> int:
        return len(self._items)

    @property
    def depth_bytes(self) -> int:
        return self._bytes

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def accepted(self) -> int:
        return self._accepted
