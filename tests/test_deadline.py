"""Request time budgets (pose3dfr.deadline): what the app's model events run under. A fake clock, no sleeping."""

from __future__ import annotations

import pytest

from pose3dfr import deadline
from pose3dfr.errors import Pose3DFRError, TimeLimitError


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(deadline.time, "monotonic", lambda: now[0])
    return now


def test_a_spent_budget_stops_the_next_step_with_a_clear_message(clock):
    deadline.check_time("anything")  # outside a budget: never
    assert deadline.remaining(10.0) == 10.0
    with deadline.time_budget(20):
        deadline.check_time("detection")
        clock[0] += 15
        assert deadline.remaining(10.0) == 5.0
        clock[0] += 6
        with pytest.raises(TimeLimitError, match="took over 20 s and was stopped before the embedding network"):
            deadline.check_time("the embedding network")
    deadline.check_time("after the request")
    assert issubclass(TimeLimitError, Pose3DFRError)


def test_nested_budgets_keep_the_earlier_deadline_and_set_up_is_not_counted(clock):
    with deadline.time_budget(10):
        with deadline.time_budget(100):
            clock[0] += 11
            with pytest.raises(TimeLimitError, match="over 10 s"):
                deadline.check_time("x")
    with deadline.time_budget(10):
        with deadline.not_counted():  # loading a model on first use
            clock[0] += 60
        clock[0] += 9
        deadline.check_time("the first step after loading")
        clock[0] += 2
        with pytest.raises(TimeLimitError):
            deadline.check_time("y")
