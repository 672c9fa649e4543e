"""Pure: the requeue message, the pipeline's own small JSON envelope on the events queue. No I/O.

``pipeline requeue`` sends one per image it wants judged again; the bridge reads it like any
other event (``pipeline.events.parse_body`` recognises ``"pipeline": "requeue"``), so a requeue
is durable in SQS and waits behind the same backpressure as new uploads::

    {"pipeline": "requeue", "version": 1,
     "work_id": "<64 hex: the report row>", "bucket": "...", "key": "...",
     "version_id": "..." | null, "etag": "..." | null,
     "outcomes": ["failed"], "requested_at": "2024-05-14T09:26:01+00:00", "reason": "free text"}

``outcomes`` lists what the row may be when the bridge gets the message; a row in any other
state (already judged again, deleted, re-queued by someone else) is left alone. Only ``failed``
and ``clean`` may be listed: a blocked image's tag is never removed, so judging it again could
record ``clean`` for an object that stays hidden. Unknown fields are ignored, so an older bridge
reads a newer message of the same ``version``; another ``version`` is malformed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pipeline import outcomes as outcome_names
from pipeline.errors import MalformedEventError

#: Value of the envelope's ``pipeline`` field, and the event kind the bridge branches on.
KIND = "requeue"
#: The one envelope version this module writes and reads.
VERSION = 1
#: ``event_name`` of a requeue event, for the bridge's log lines.
EVENT_NAME = "pipeline:Requeue"
#: Outcomes a requeue may move back to pending (see the module docstring for blocked).
REQUEUEABLE = (outcome_names.FAILED, outcome_names.CLEAN)
#: What a requeue asks for when it names no outcomes.
DEFAULT_OUTCOMES = (outcome_names.FAILED,)
#: Longest ``reason`` kept; it is for log lines, not for documents.
MAX_REASON_CHARS = 500
#: Longest excerpt of an offending value quoted in an error message.
EXCERPT_CHARS = 60

_WORK_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RequeueEvent:
    """A request to send one report row through detect -> tag -> report again.

    Shaped like :class:`pipeline.events.ObjectEvent` where the bridge reads both (``bucket``,
    ``key``, ``kind``, ``event_name``, ``version_id``), and told apart by ``kind == "requeue"``.
    """

    work_id: str
    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    requested_at: str
    reason: str = ""
    outcomes: tuple[str, ...] = DEFAULT_OUTCOMES
    kind: str = KIND
    event_name: str = EVENT_NAME
    source: str = "pipeline"


def build_message(
    row: Any, *, reason: str = "", outcomes: Sequence[str] = DEFAULT_OUTCOMES, now: datetime | None = None
) -> str:
    """The JSON body asking the bridge to judge ``row`` (an ImageRow) again."""
    document = {
        "pipeline": KIND,
        "version": VERSION,
        "work_id": row.work_id,
        "bucket": row.bucket,
        "key": row.key,
        "version_id": row.version_id,
        "etag": row.etag,
        "outcomes": list(_checked_outcomes(outcomes)),
        "requested_at": (now or datetime.now(timezone.utc)).isoformat(),
        "reason": reason[:MAX_REASON_CHARS],
    }
    return json.dumps(document, ensure_ascii=False, sort_keys=True)


def parse_message(body: str | bytes) -> RequeueEvent:
    """The requeue event in ``body``; MalformedEventError naming the problem otherwise."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise MalformedEventError("requeue message is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedEventError("requeue message must be a JSON object")
    return from_document(document)


def is_requeue(document: Mapping[str, Any]) -> bool:
    """True when a parsed message body claims to be a requeue envelope."""
    return document.get("pipeline") == KIND


def from_document(document: Mapping[str, Any]) -> RequeueEvent:
    """Validate a parsed requeue envelope; MalformedEventError naming the first bad field."""
    version = document.get("version")
    if version != VERSION or isinstance(version, bool):
        raise MalformedEventError(f"requeue message version must be {VERSION}, got {_shown(version)}")
    work_id = _text(document, "work_id")
    if not _WORK_ID.fullmatch(work_id):
        raise MalformedEventError(f"requeue message work_id must be 64 lowercase hex digits, got {_shown(work_id)}")
    return RequeueEvent(
        work_id=work_id,
        bucket=_text(document, "bucket"),
        key=_text(document, "key"),
        version_id=_optional_text(document, "version_id"),
        etag=_optional_text(document, "etag"),
        requested_at=_timestamp(document),
        reason=_reason(document),
        outcomes=_outcomes(document),
    )


def _text(document: Mapping[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or value == "":
        raise MalformedEventError(f"requeue message needs a non-empty string {name!r}, got {_shown(value)}")
    return value


def _optional_text(document: Mapping[str, Any], name: str) -> str | None:
    value = document.get(name)
    if value is not None and (not isinstance(value, str) or value == ""):
        raise MalformedEventError(f"requeue message {name!r} must be a non-empty string or null, got {_shown(value)}")
    return value


def _timestamp(document: Mapping[str, Any]) -> str:
    """``requested_at`` as sent, after checking it is ISO-8601."""
    value = _text(document, "requested_at")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEventError(f"requeue message requested_at is not ISO-8601: {_shown(value)}") from None
    return value


def _reason(document: Mapping[str, Any]) -> str:
    value = document.get("reason", "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedEventError(f"requeue message reason must be a string, got {_shown(value)}")
    return value[:MAX_REASON_CHARS]


def _outcomes(document: Mapping[str, Any]) -> tuple[str, ...]:
    value = document.get("outcomes", list(DEFAULT_OUTCOMES))
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise MalformedEventError(f"requeue message outcomes must be a non-empty list of strings, got {_shown(value)}")
    try:
        return _checked_outcomes(value)
    except ValueError as exc:
        raise MalformedEventError(f"requeue message {exc}") from None


def _checked_outcomes(values: Iterable[str]) -> tuple[str, ...]:
    """The outcomes in a stable order without repeats; ValueError for one a requeue may not move."""
    chosen = set(values)
    wrong = sorted(chosen - set(REQUEUEABLE))
    if wrong:
        raise ValueError(f"outcomes may only be {', '.join(REQUEUEABLE)}, not {', '.join(wrong)}")
    if not chosen:
        raise ValueError("outcomes must not be empty")
    return tuple(name for name in REQUEUEABLE if name in chosen)


def _shown(value: Any) -> str:
    """A short JSON rendering of an offending value for error messages."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


__all__ = ["DEFAULT_OUTCOMES", "KIND", "REQUEUEABLE", "RequeueEvent", "build_message", "from_document",
           "is_requeue", "parse_message"]
