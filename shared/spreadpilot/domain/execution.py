"""The execution state machine of one signal for one follower (SPEC section 3).

Each execution record moves through these states, written before and after
every step so that a restart resumes from the record. The transition table is
explicit so that an impossible move (FILLED back to WORKING, say) is a loud
error instead of a silently re-sent order.
"""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum


class ExecutionState(StrEnum):
    RECEIVED = "RECEIVED"
    SIZED = "SIZED"
    QUOTED = "QUOTED"
    MARGIN_OK = "MARGIN_OK"
    WORKING = "WORKING"
    FILLED = "FILLED"
    PARTIAL = "PARTIAL"
    LIMIT_REACHED = "LIMIT_REACHED"
    MID_TOO_LOW = "MID_TOO_LOW"
    NO_MARGIN = "NO_MARGIN"
    REJECTED = "REJECTED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"
    POSITION_LIMIT = "POSITION_LIMIT"


class IllegalTransition(ValueError):
    """A state change the table does not allow."""

    def __init__(self, current: ExecutionState, target: ExecutionState) -> None:
        super().__init__(f"illegal execution transition {current.value} -> {target.value}")
        self.current = current
        self.target = target


_S = ExecutionState

TERMINAL_STATES: frozenset[ExecutionState] = frozenset(
    {
        _S.FILLED,
        _S.LIMIT_REACHED,
        _S.MID_TOO_LOW,
        _S.NO_MARGIN,
        _S.REJECTED,
        _S.FAILED,
        _S.SKIPPED,
        _S.POSITION_LIMIT,
    }
)

# FAILED (gateway unreachable, unexpected error) is reachable from every
# non-terminal state and added below. WORKING -> WORKING is a rung move (the
# order modified in place); PARTIAL -> PARTIAL is a further partial fill. A
# partial fill that ends without completing is LIMIT_REACHED (with the filled
# quantity), never REJECTED: something was bought and must be accounted for.
# SKIPPED before an order exists covers a halt or disable arriving mid-way.
_FORWARD: dict[ExecutionState, frozenset[ExecutionState]] = {
    _S.RECEIVED: frozenset({_S.SIZED, _S.SKIPPED, _S.POSITION_LIMIT}),
    _S.SIZED: frozenset({_S.QUOTED, _S.SKIPPED, _S.POSITION_LIMIT}),
    _S.QUOTED: frozenset({_S.MARGIN_OK, _S.MID_TOO_LOW, _S.NO_MARGIN, _S.SKIPPED}),
    _S.MARGIN_OK: frozenset({_S.WORKING, _S.REJECTED, _S.SKIPPED}),
    _S.WORKING: frozenset({_S.WORKING, _S.PARTIAL, _S.FILLED, _S.LIMIT_REACHED, _S.REJECTED}),
    _S.PARTIAL: frozenset({_S.PARTIAL, _S.FILLED, _S.LIMIT_REACHED}),
}
TRANSITIONS: dict[ExecutionState, frozenset[ExecutionState]] = {
    **{state: targets | {_S.FAILED} for state, targets in _FORWARD.items()},
    **{state: frozenset() for state in TERMINAL_STATES},
}


def is_terminal(state: ExecutionState) -> bool:
    """True when nothing more happens to this execution (no order is working)."""
    return state in TERMINAL_STATES


def can_transition(current: ExecutionState, target: ExecutionState) -> bool:
    return target in TRANSITIONS[current]


def transition(current: ExecutionState, target: ExecutionState) -> ExecutionState:
    """Return ``target`` if the move is allowed, else raise ``IllegalTransition``."""
    if not can_transition(current, target):
        raise IllegalTransition(current, target)
    return target


_REF_UNSAFE = re.compile(r"[^a-z0-9]+")


def order_ref_for(signal_id: str, follower_id: str) -> str:
    """Deterministic IB ``orderRef`` for (signal, follower); at most 32 characters.

    After a restart the sidecar finds its open orders and executions by this
    ref instead of placing again. The hash makes it unique; the follower
    prefix makes it readable in TWS.
    """
    digest = hashlib.sha256(f"{signal_id}\x1f{follower_id}".encode()).hexdigest()[:16]
    readable = _REF_UNSAFE.sub("", follower_id.lower())[:12]
    return f"sp-{readable}-{digest}" if readable else f"sp-{digest}"
