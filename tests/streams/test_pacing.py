"""Replay pacing on an injected clock: the schedule, never the wall clock, is checked."""

from __future__ import annotations

import pytest

from streamrec.streams.pacing import AsFastAsPossible, Pace, Pacer, Rate, Speed


class FakeClock:
    """A clock that only moves when slept on, or when a test moves it (work taking time)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the pacer must never sleep a non-positive time"
        self.sleeps.append(seconds)
        self.now += seconds


def send_times(
    pacer: Pacer, clock: FakeClock, timestamps: list[int], work_s: float = 0.0
) -> list[float]:
    """Clock times at which each event leaves, with ``work_s`` of work after each send."""
    out = []
    for ts in timestamps:
        pacer.wait(ts)
        out.append(clock.now)
        clock.now += work_s
    return out


def pacer_on(clock: FakeClock, pace: Pace, min_sleep_s: float = 0.001) -> Pacer:
    return Pacer(pace, clock=clock, sleep=clock.sleep, min_sleep_s=min_sleep_s)


def test_speed_one_keeps_the_files_inter_arrival_times() -> None:
    clock = FakeClock()
    times = send_times(pacer_on(clock, Speed(1.0)), clock, [5_000, 5_250, 6_000, 9_000])
    assert [t - times[0] for t in times] == pytest.approx([0.0, 0.25, 1.0, 4.0])


def test_speed_factor_divides_the_gaps() -> None:
    clock = FakeClock()
    times = send_times(pacer_on(clock, Speed(10.0)), clock, [0, 1_000, 3_000, 3_500])
    assert [t - times[0] for t in times] == pytest.approx([0.0, 0.1, 0.3, 0.35])


def test_rate_spaces_events_evenly_whatever_their_timestamps() -> None:
    clock = FakeClock()
    times = send_times(pacer_on(clock, Rate(4.0)), clock, [0, 0, 10_000_000, 5])
    assert [t - times[0] for t in times] == pytest.approx([0.0, 0.25, 0.5, 0.75])


def test_max_never_sleeps() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, AsFastAsPossible())
    send_times(pacer, clock, [0, 10_000, 20_000_000])
    assert clock.sleeps == []
    assert pacer.due(123) is None
    assert not pacer.paced and pacer_on(clock, Rate(1.0)).paced


def test_schedule_is_anchored_to_the_start_so_slow_sends_do_not_accumulate_drift() -> None:
    clock = FakeClock()
    # 10 events/s but each send takes 0.04 s of work: the pacer sleeps only the remainder.
    times = send_times(pacer_on(clock, Rate(10.0)), clock, [0] * 5, work_s=0.04)
    assert [t - times[0] for t in times] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert clock.sleeps == pytest.approx([0.06] * 4)


def test_falling_behind_catches_up_without_sleeping_and_reports_the_lag() -> None:
    clock = FakeClock()
    pacer = pacer_on(clock, Rate(10.0))
    pacer.wait(0)
    clock.now += 0.35  # a stall: events 1..3 (due at 0.1, 0.2, 0.3) are late
    for expected_lag in (0.25, 0.15, 0.05):
        pacer.wait(0)
        assert pacer.behind_s == pytest.approx(expected_lag)
    assert clock.sleeps == []
    pacer.wait(0)  # event 4 is due at 0.4: on schedule again
    assert clock.sleeps == pytest.approx([0.05])
    assert pacer.behind_s == 0.0


def test_timestamps_going_backwards_are_sent_at_once() -> None:
    clock = FakeClock()
    times = send_times(pacer_on(clock, Speed(1.0)), clock, [10_000, 12_000, 11_000, 12_500])
    assert [t - times[0] for t in times] == pytest.approx([0.0, 2.0, 2.0, 2.5])


def test_waits_shorter_than_min_sleep_are_skipped_without_losing_the_schedule() -> None:
    clock = FakeClock()
    # 2,000 events/s: every gap is 0.5 ms, under the 1 ms floor. The pacer lets a send go
    # out early rather than sleep 0.5 ms, and sleeps once it is a full floor ahead.
    times = send_times(pacer_on(clock, Rate(2_000.0), min_sleep_s=0.001), clock, [0] * 101)
    assert 0 < len(clock.sleeps) <= 50  # at most one sleep per two gaps, never per event
    assert min(clock.sleeps) >= 0.001 - 1e-9
    # No send is more than the floor early, nor late (the clock only moves by sleeping).
    eps = 1e-9
    assert all(
        i * 0.0005 - 0.001 - eps <= t - times[0] <= i * 0.0005 + eps for i, t in enumerate(times)
    )
    assert times[-1] - times[0] == pytest.approx(0.05, abs=0.001)  # the 101st is due at 50 ms


def test_invalid_paces_are_refused() -> None:
    with pytest.raises(ValueError, match="speed"):
        Speed(0)
    with pytest.raises(ValueError, match="rate"):
        Rate(-5)
