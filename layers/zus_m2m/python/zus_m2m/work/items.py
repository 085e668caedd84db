"""The queue message that hands one client's due work from the dispatcher to the worker, read back
strictly (docs/design.md, Scheduled work; the kinds and ``WorkItem`` are values, ``zus_m2m.values``).

A table item is due while it carries ``dueKind`` and ``dueAt`` (the due index, ``zus_m2m.aws.table``):
a token item of a client in use (``refresh``: renew its token before it enters the refresh margin) and a
record item (``rotation``: the client's rotation check). The dispatcher claims an item by moving its
``dueAt`` on, and the message names the ``dueAt`` it claimed: the work is still to be done while the item
says so, and a message that finds the item moved on (done, or dispatched again) does nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any

from zus_m2m import errors, validation
from zus_m2m.values import KINDS, WorkItem

_FIELDS = ("kind", "client", "dueAt")
# A message body is small; anything much larger is not one of ours.
_MAX_BODY = 1024


def from_message(body: str) -> WorkItem:
    """The work a message (``WorkItem.to_message``) names; InvalidRequest naming the problem for any body
    the dispatcher would not have sent."""
    if len(body) > _MAX_BODY:
        raise errors.InvalidRequest(f"a work message has at most {_MAX_BODY} characters, got {len(body)}")
    try:
        document = json.loads(body, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise errors.InvalidRequest("a work message must be a JSON object; this one is not JSON") from None
    if not isinstance(document, dict):
        raise errors.InvalidRequest("a work message must be a JSON object")
    if sorted(document) != sorted(_FIELDS):
        raise errors.InvalidRequest(
            f"a work message has exactly the fields {', '.join(_FIELDS)}; got {', '.join(map(str, document))}"
        )
    kind, due_at = document["kind"], document["dueAt"]
    if kind not in KINDS:
        raise errors.InvalidRequest(f"unknown kind of work {str(kind)[:40]!r}; kinds are {', '.join(KINDS)}")
    if isinstance(due_at, bool) or not isinstance(due_at, int | float) or not math.isfinite(due_at):
        raise errors.InvalidRequest("dueAt must be a number of epoch seconds")
    return WorkItem(kind, validation.client_name(document["client"]), float(due_at))


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise errors.InvalidRequest(f"the key {repeated[0][:40]!r} is given twice")
    return dict(pairs)
