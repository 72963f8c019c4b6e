"""When each replayed event may go out: the file's own timing scaled, a fixed rate, or no wait.

The schedule is anchored to the first event (``due = start + offset``), never to the
previous send, so sleeping a little too long or a slow broker never accumulates drift: a
replay that falls behind catches up by sending without waiting until it is on schedule
again. The clock and sleep are injected so the timing logic is tested without real time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

#: Waits shorter than this are skipped (the event goes out up to this early): at high rates
#: a sleep syscall per event would cost more than it corrects, and ``time.sleep`` cannot
#: sleep much less than this anyway.
DEFAULT_MIN_SLEEP_S = 0.001


@dataclass(frozen=True, slots=True)
class Speed:
    """Keep the file's inter-arrival times (from the events' ``ts``), divided by ``factor``."""

    factor: float

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"speed must be > 0, got {self.factor}")


@dataclass(frozen=True, slots=True)
class Rate:
    """A fixed rate of ``per_second`` events per second, whatever the timestamps say."""

    per_second: float

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError(f"rate must be > 0 events/s, got {self.per_second}")


@dataclass(frozen=True, slots=True)
class AsFastAsPossible:
    """No pacing: each event goes out as soon as the producer takes it."""


Pace = Speed | Rate | AsFastAsPossible


class Pacer:
    """Blocks in :meth:`wait` until the next event is due under the chosen :data:`Pace`.

    ``behind_s`` is how late the last event was against its schedule (0 when on time), so
    a caller can tell when the broker or the producer cannot keep the requested pace.
    """

    def __init__(
        self,
        pace: Pace,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        min_sleep_s: float = DEFAULT_MIN_SLEEP_S,
    ) -> None:
        self.pace = pace
        self._clock = clock
        self._sleep = sleep
        self._min_sleep_s = min_sleep_s
        self._start: float | None = None
        self._first_ts: int | None = None
        self._count = 0
        self.behind_s = 0.0

    @property
    def paced(self) -> bool:
        """Whether :meth:`wait` ever waits (False for :class:`AsFastAsPossible`)."""
        return not isinstance(self.pace, AsFastAsPossible)

    def due(self, ts_ms: int) -> float | None:
        """The clock time at which the next event (with timestamp ``ts_ms``) is due;
        ``None`` when it is due at once (no pacing, or the first event)."""
        if isinstance(self.pace, AsFastAsPossible) or self._start is None:
            return None
        if isinstance(self.pace, Rate):
            return self._start + self._count / self.pace.per_second
        assert self._first_ts is not None
        # Timestamps that go backwards are due "in the past", i.e. at once.
        return self._start + (ts_ms - self._first_ts) / 1000.0 / self.pace.factor

    def wait(self, ts_ms: int) -> None:
        """Sleep until the next event is due, then count it as sent."""
        if isinstance(self.pace, AsFastAsPossible):
            return
        if self._start is None:
            self._start = self._clock()
            self._first_ts = ts_ms
        else:
            due = self.due(ts_ms)
            assert due is not None
            delay = due - self._clock()
            if delay >= self._min_sleep_s:
                self._sleep(delay)
                self.behind_s = 0.0
            else:
                self.behind_s = max(0.0, -delay)
        self._count += 1
