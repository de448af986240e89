"""Reconnect delays: capped exponential backoff with jitter.

Jitter keeps several processes that lost the same gateway at the same instant (the
exit manager, the day trader, the phases) from knocking on it in lockstep.
"""

from __future__ import annotations

import random
from collections.abc import Iterator


def backoff_delays(
    base: float, cap: float, jitter: float, rng: random.Random | None = None
) -> Iterator[float]:
    """Yield reconnect delays in seconds, forever: ``min(cap, base * 2**n)`` less up to ``jitter``.

    ``jitter`` is a fraction in [0, 1]: each delay is drawn uniformly from
    ``[d * (1 - jitter), d]``, so it never exceeds the cap and never drops below
    ``(1 - jitter)`` of the nominal delay.
    """
    if base <= 0 or cap < base:
        raise ValueError(f"need 0 < base <= cap, got base={base}, cap={cap}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    draw = rng or random.Random()
    nominal = base
    while True:
        yield nominal * (1.0 - jitter * draw.random())
        # Stop doubling at the cap so the exponent cannot overflow over a long outage.
        nominal = min(cap, nominal * 2.0)
