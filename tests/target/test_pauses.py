"""The growing pauses between tries (a busy table, a lost connection)."""

from __future__ import annotations

from target_warehouse_seg.pauses import Pauses


def test_pauses_double_up_to_the_longest_then_stop_at_the_budget() -> None:
    pauses = Pauses(first=1, longest=4, budget=12)
    assert [pauses.next() for _ in range(6)] == [1, 2, 4, 4, 4, None]
    assert pauses.spent == 15


def test_what_each_try_waited_counts_against_the_budget() -> None:
    pauses = Pauses(first=1, longest=30, budget=6)
    assert [pauses.next(waited_by_try=2) for _ in range(3)] == [1, 2, None]


def test_a_reset_starts_again_from_the_first_pause() -> None:
    pauses = Pauses(first=0.5, longest=30, budget=100)
    pauses.next(), pauses.next()
    pauses.reset()
    assert (pauses.next(), pauses.tries) == (0.5, 1)
