"""The capped exponential wait the relay and the webhook worker share (each adds its own
jitter)."""

from __future__ import annotations

# Doublings past this many reach any cap the settings allow; and 2.0 ** 1024 is no float
# (OverflowError), where the attempts allowed (and an outage's claims) run far past it.
MAX_DOUBLINGS = 64


def doubled(base: float, attempts: int, cap: float) -> float:
    """``base`` doubled at each attempt after the first, at most ``cap``, for any number
    of attempts."""
    return min(cap, base * 2.0 ** min(max(attempts - 1, 0), MAX_DOUBLINGS))
