"""The problem document (RFC 9457) every error answer of the service API carries: its media type,
its shape, and the JSON schema ``docs/openapi.json`` publishes for it. Standard library only, so
that ``zus_m2m.openapi`` can use it too."""

from __future__ import annotations

from typing import Any

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:zus-m2m:problem:"


def document(status: int, title: str, detail: str, kind: str) -> dict[str, Any]:
    """``kind`` is a lower-case, hyphenated name of the problem (e.g. ``resource-not-found``)."""
    return {"type": TYPE_PREFIX + kind, "title": title, "status": status, "detail": detail}


SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "pattern": f"^{TYPE_PREFIX}[a-z-]+$"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
    },
    "additionalProperties": False,
}
