"""GroupCommit with real threads: concurrent callers share one write, each gets its own result, a bad item
fails only its caller, and an error of a lone write reaches its caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from pm.common.group_commit import GroupCommit


def wait_until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


class Recorder:
    """A write that records its batches; the first one waits for `release` when `hold` is set."""

    def __init__(self, *, hold: bool = False, bad: Sequence[int] = ()) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.hold = hold
        self.bad = set(bad)

    def __call__(self, items: Sequence[int]) -> list[str]:
        self.batches.append(list(items))
        self.started.set()
        if self.hold and len(self.batches) == 1:
            assert self.release.wait(5)
        if self.bad & set(items):
            raise ValueError(f"cannot write {sorted(self.bad & set(items))}")
        return [f"stored {item}" for item in items]


def queued_behind_a_held_write(
    write: Recorder, group: GroupCommit[int, str], items: Sequence[int]
) -> dict[int, str | BaseException]:
    """Item 0 is submitted and its write held; `items` are submitted meanwhile and wait; then the write
    is let go. What each caller of `items` got, once all are answered."""
    answers: dict[int, str | BaseException] = {}

    def call(item: int) -> None:
        try:
            answers[item] = group.submit(item)
        except Exception as exc:  # what the caller got is the test's subject
            answers[item] = exc

    threads = [threading.Thread(target=call, args=(0,))]
    threads[0].start()
    assert write.started.wait(5)
    threads += [threading.Thread(target=call, args=(item,)) for item in items]
    for thread in threads[1:]:
        thread.start()
    wait_until(lambda: group.waiting == len(items))
    write.release.set()
    for thread in threads:
        thread.join(5)
    assert answers.pop(0) == "stored 0"
    return answers


def test_one_caller_at_a_time_writes_batches_of_one() -> None:
    write = Recorder()
    group: GroupCommit[int, str] = GroupCommit(write)
    assert [group.submit(i) for i in (1, 2, 3)] == ["stored 1", "stored 2", "stored 3"]
    assert write.batches == [[1], [2], [3]]
    assert group.waiting == 0


def test_callers_arriving_during_a_write_share_the_next_one_and_get_their_own_results() -> None:
    write = Recorder(hold=True)
    group: GroupCommit[int, str] = GroupCommit(write)
    answers = queued_behind_a_held_write(write, group, [1, 2, 3, 4, 5])
    assert write.batches[0] == [0]
    assert sorted(write.batches[1]) == [1, 2, 3, 4, 5]
    assert len(write.batches) == 2
    assert answers == {i: f"stored {i}" for i in (1, 2, 3, 4, 5)}


def test_a_batch_is_at_most_max_batch_items() -> None:
    write = Recorder(hold=True)
    group: GroupCommit[int, str] = GroupCommit(write, max_batch=2)
    answers = queued_behind_a_held_write(write, group, [1, 2, 3, 4, 5])
    assert [len(batch) for batch in write.batches] == [1, 2, 2, 1]
    assert answers == {i: f"stored {i}" for i in (1, 2, 3, 4, 5)}


def test_a_bad_item_fails_its_own_caller_only() -> None:
    write = Recorder(hold=True, bad=[3])
    group: GroupCommit[int, str] = GroupCommit(write)
    answers = queued_behind_a_held_write(write, group, [1, 2, 3, 4])
    assert {i: answers[i] for i in (1, 2, 4)} == {1: "stored 1", 2: "stored 2", 4: "stored 4"}
    assert isinstance(answers[3], ValueError)
    # The shared batch failed; each of its callers then wrote its own item alone.
    assert sorted(write.batches[1]) == [1, 2, 3, 4]
    assert sorted(map(tuple, write.batches[2:])) == [(1,), (2,), (3,), (4,)]


def test_a_lone_write_that_fails_raises_to_its_caller_and_the_next_call_writes() -> None:
    write = Recorder(bad=[7])
    group: GroupCommit[int, str] = GroupCommit(write)
    with pytest.raises(ValueError, match="cannot write"):
        group.submit(7)
    assert write.batches == [[7]]  # not written a second time
    assert group.submit(8) == "stored 8"


def test_a_write_answering_the_wrong_number_of_results_is_an_error_not_a_wrong_answer() -> None:
    group: GroupCommit[int, str] = GroupCommit(lambda items: [])
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        group.submit(1)
