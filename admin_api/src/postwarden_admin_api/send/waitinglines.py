"""Delivery lines waiting for their queue id, and the form they are saved in.

A line can be read before the relay stored the queue id it names: the maillog
follower (:mod:`.maillog`) tries it again at its next polls. Those about a
message of ours the relay has yet to store (a receipt names its queue id), or
stored before the reader read its arrival (migration 0055), are kept as long as
that lasts and saved with the read position (migration 0014),
so the next reader goes on with them; the others wait ``PENDING_SECONDS``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .deliverylines import DeliveryEvent

PENDING_SECONDS = 60.0
MAX_PENDING = 10_000

# A line waiting for its queue id: when it was read (time.time()) and what it says.
Waiting = tuple[float, DeliveryEvent]


# Not saved: an instance of an earlier version, taking the lines over, would choke on a
# field its DeliveryEvent lacks (it passes every key on). Such a line, applied by the
# next reader, has no logged_at, and a hand-over is taken for the delivery it says.
_UNSAVED = frozenset({"logged_at", "handed_to"})
_FIELDS = frozenset(field.name for field in dataclasses.fields(DeliveryEvent))


def saved_form(waiting: list[Waiting]) -> list[dict[str, object]]:
    return [{"seen": seen, **{k: v for k, v in dataclasses.asdict(event).items()
                              if k not in _UNSAVED}}
            for seen, event in waiting]


def restored(saved: list[dict[str, Any]]) -> list[Waiting]:
    """The lines ``saved_form`` saved (a later version's too: what this one's
    DeliveryEvent lacks is left out)."""
    return [(entry["seen"], DeliveryEvent(**{k: v for k, v in entry.items() if k in _FIELDS}))
            for entry in saved]


def still_waiting(queue: list[Waiting], applied: set[int], awaited: set[str]
                  ) -> tuple[list[Waiting], list[Waiting]]:
    """The lines of ``queue`` not applied: those about a message of ours the relay has
    yet to store (``awaited``: kept as long as its receipt, to be saved with the read
    position), and the others, for ``PENDING_SECONDS`` and within ``MAX_PENDING``."""
    now = time.time()
    kept: list[Waiting] = []
    others: list[Waiting] = []
    for index, (seen, event) in enumerate(queue):
        if index in applied:
            continue
        if event.queue_id in awaited:
            kept.append((seen, event))
        elif now - seen < PENDING_SECONDS:
            others.append((seen, event))
    room = max(0, MAX_PENDING - len(kept))
    return kept, others[len(others) - room:]

