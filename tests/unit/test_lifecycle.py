"""A hosted session's life on its worker: the transition table and what each state allows."""

from __future__ import annotations

import pytest

from cellbus_kernel.lifecycle import (
    TRANSITIONS,
    Departure,
    HostingState,
    IllegalTransition,
    Lifecycle,
)


def abilities(life: Lifecycle) -> set[str]:
    """What the session's state allows, by name."""
    allowed = {
        "takes requests": life.takes_requests,
        "serving": life.serving,
        "may start a process": life.may_start_process,
        "holds its lease": life.holds_lease,
        "lost": life.lost,
    }
    return {name for name, yes in allowed.items() if yes}


def test_a_session_starts_serves_hibernates_and_leaves() -> None:
    life = Lifecycle("s1")
    assert life.state is HostingState.STARTING
    assert abilities(life) == {"takes requests", "may start a process", "holds its lease"}
    life.to(HostingState.SERVING)
    assert abilities(life) == {
        "takes requests", "serving", "may start a process", "holds its lease"
    }  # fmt: skip
    life.to(HostingState.ENDING)
    assert abilities(life) == set()
    life.leave(Departure.HIBERNATED)
    assert life.left.is_set() and life.departure is Departure.HIBERNATED
    assert abilities(life) == set()


def test_a_draining_session_may_start_a_process_but_takes_no_request() -> None:
    life = Lifecycle("s1")
    life.to(HostingState.SERVING)
    life.to(HostingState.DRAINING)
    assert abilities(life) == {"may start a process", "holds its lease"}


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], HostingState.STARTING),  # no state changes to itself
        ([HostingState.SERVING], HostingState.STARTING),  # nothing goes back
        ([HostingState.SERVING, HostingState.ENDING], HostingState.SERVING),
        ([HostingState.SERVING, HostingState.ENDING], HostingState.DRAINING),
        ([HostingState.SERVING, HostingState.DRAINING], HostingState.SERVING),
    ],
)
def test_the_state_machine_refuses_an_illegal_transition(
    path: list[HostingState], illegal: HostingState
) -> None:
    life = Lifecycle("s1")
    for state in path:
        life.to(state)
    before = life.state
    with pytest.raises(IllegalTransition, match=f"{before.value} -> {illegal.value}"):
        life.to(illegal)
    assert life.state is before  # unchanged


def test_a_session_that_left_changes_no_more() -> None:
    life = Lifecycle("s1")
    life.leave(Departure.LOST)
    assert abilities(life) == {"lost"}
    for state in HostingState:
        with pytest.raises(IllegalTransition):
            life.to(state)
    with pytest.raises(IllegalTransition):
        life.leave(Departure.SHUT_DOWN)
    assert life.departure is Departure.LOST


def test_a_lease_can_be_lost_in_every_state_but_left() -> None:
    for state in HostingState:
        assert (HostingState.LEFT in TRANSITIONS[state]) is (state is not HostingState.LEFT)


def test_what_the_worker_does_for_each_departure() -> None:
    """Lost: the lease and registry are not the worker's to touch; moved: handed over at
    once and left registered; hibernated: hosted again if requests came meanwhile."""
    assert [d for d in Departure if not d.lets_go] == [Departure.LOST]
    assert {d for d in Departure if d.stays_registered} == {Departure.MOVED, Departure.LOST}
    assert [d for d in Departure if d.hands_over] == [Departure.MOVED]
    assert [d for d in Departure if d.wakes_for_queued] == [Departure.HIBERNATED]
