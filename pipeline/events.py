"""Pure parsing: one SQS message body -> the S3 object events it carries. No I/O.

Three envelopes reach the events queue, all decoded here into one :class:`ObjectEvent` shape:

* an S3 event notification sent straight to SQS: ``{"Records": [...]}`` (several records possible);
* the same notification published to SNS and delivered to SQS: an SNS ``Notification`` whose
  ``Message`` is the S3 JSON *as a string*;
* an EventBridge event from ``aws.s3`` (``detail-type`` "Object Created" and friends).

The pipeline's own requeue envelope (``{"pipeline": "requeue", ...}``, sent by ``pipeline
requeue``) is recognised here too and comes back as a :class:`pipeline.requeue.RequeueEvent`
(``kind == "requeue"``); its format and checks live in :mod:`pipeline.requeue.envelope`.

S3's ``s3:TestEvent`` and event types the pipeline does not act on (tagging, ACLs, lifecycle,
replication, ...) yield no events. In particular the pipeline's own ``PutObjectTagging`` fires
``ObjectTagging:Put`` / "Object Tags Added": that must never come back as work. Anything else raises
:class:`~pipeline.errors.MalformedEventError`; one bad record makes the whole message malformed, so
the message goes to the dead-letter queue intact instead of being half processed. Error messages
quote at most a short excerpt: a body can be 256 KiB.

Key encoding differs between the envelopes:

* S3 notifications (direct or through SNS) carry the key URL-encoded, form style. AWS's "Event
  message structure" page: "The object key name value is URL encoded. For example, "red flower.jpg"
  becomes "red+flower.jpg"". So ``+`` is a space, ``%2B`` a plus, ``%2F`` a slash (moto encodes
  slashes; AWS leaves them), and non-ASCII is percent-encoded UTF-8: ``urllib.parse.unquote_plus``.
* EventBridge events carry the key as it is. AWS's "EventBridge event message structure" page
  (docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html) documents ``detail.object.key``
  with no word of encoding; the URL-encoding note is only on the notification page. Practice agrees:
  AWS's own sample aws-solutions-library-samples/guidance-for-medialake-on-aws (PR #21) had to stop
  decoding EventBridge keys because ``video+data.mp4`` was turned into ``video data.mp4``, and moto
  sends EventBridge keys raw while ``quote_plus``-ing SQS/SNS ones. Decoding them here would corrupt
  every key holding ``+`` or ``%``, so EventBridge keys are used verbatim.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from pipeline.errors import MalformedEventError
from pipeline.requeue.envelope import RequeueEvent, from_document as requeue_from_document, is_requeue
from pipeline.settings import DEFAULT_PREFIX, DEFAULT_SUFFIXES

#: SQS's own message size limit (the queue default; S3 keeps a notification under 64 KB).
MAX_BODY_BYTES = 256 * 1024
#: Sequencers are right-padded to this many hex digits before comparing; real ones have 16-18.
SEQUENCER_DIGITS = 64
#: Longest excerpt of an offending value quoted in an error message.
EXCERPT_CHARS = 60

KINDS = ("created", "removed", "restored")
SOURCES = ("s3", "sns", "eventbridge")

#: S3 notification ``eventName`` families (``ObjectCreated:*``); None: recognised, no work.
_EVENT_NAME_PREFIXES: dict[str, str | None] = {
    "ObjectCreated:": "created",
    "ObjectRemoved:": "removed",
    "ObjectTagging:": None,
    "LifecycleExpiration:": None,
    "Replication:": None,
}
#: S3 notification ``eventName`` values matched exactly; None: recognised, no work.
_EVENT_NAMES: dict[str, str | None] = {
    "ObjectRestore:Completed": "restored",
    "ObjectRestore:Post": None,
    "ObjectRestore:Delete": None,
    "ObjectAcl:Put": None,
    "LifecycleTransition": None,
    "IntelligentTiering": None,
    "ReducedRedundancyLostObject": None,
}
#: EventBridge ``detail-type`` values S3 sends (AWS's "Using EventBridge" table); None: no work.
_DETAIL_TYPES: dict[str, str | None] = {
    "Object Created": "created",
    "Object Deleted": "removed",
    "Object Restore Completed": "restored",
    "Object Restore Initiated": None,
    "Object Restore Expired": None,
    "Object Storage Class Changed": None,
    "Object Access Tier Changed": None,
    "Object ACL Updated": None,
    "Object Tags Added": None,
    "Object Tags Deleted": None,
}
#: Optional object fields: ``eTag``/``versionId`` in notifications, ``etag``/``version-id`` in EventBridge.
_S3_OBJECT_FIELDS = {"size": "size", "etag": "eTag", "version_id": "versionId", "sequencer": "sequencer"}
_EVENTBRIDGE_OBJECT_FIELDS = {"size": "size", "etag": "etag", "version_id": "version-id", "sequencer": "sequencer"}

_HEX = re.compile(r"[0-9A-Fa-f]+")
_JSON_TYPES = {
    dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer", float: "a number"
}


@dataclass(frozen=True)
class KeyFilter:
    """Which keys are the pipeline's business: a prefix (exact case) and suffixes (any case)."""

    prefix: str = DEFAULT_PREFIX
    #: Matched case-insensitively (``.JPG`` is a ``.jpg``); empty means any suffix.
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES

    def matches(self, key: str) -> bool:
        """True when the decoded ``key`` starts with the prefix and ends with one of the suffixes."""
        if not key.startswith(self.prefix):  # S3 keys are case-sensitive, so the prefix is too
            return False
        lowered = key.lower()
        return not self.suffixes or any(lowered.endswith(suffix.lower()) for suffix in self.suffixes)

    @classmethod
    def from_settings(cls, settings: Any) -> "KeyFilter":
        """The filter configured by ``settings.prefix`` and ``settings.suffixes``."""
        return cls(prefix=settings.prefix, suffixes=tuple(settings.suffixes))


@dataclass(frozen=True)
class ObjectEvent:
    """One thing that happened to one object (version), whatever envelope it came in."""

    bucket: str
    #: Decoded: the key to pass to S3 calls.
    key: str
    #: "created" | "removed" | "restored"
    kind: str
    #: As sent: "ObjectCreated:Put"; for EventBridge the detail-type, "Object Created".
    event_name: str
    #: ISO-8601 UTC text as sent.
    event_time: str
    #: None when absent or "null": a null version is overwritten in place, like an unversioned object.
    version_id: str | None = None
    #: Deletes carry none.
    size: int | None = None
    #: Without surrounding quotes.
    etag: str | None = None
    sequencer: str | None = None
    #: "s3" | "sns" | "eventbridge"
    source: str = "s3"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")

    @property
    def identity(self) -> tuple[str, ...]:
        """What makes two events the same piece of work.

        A version id names immutable bytes, so it is enough. Without one the key is overwritten in
        place: the same bytes uploaded again are new work, told apart by the sequencer (or the event
        time where S3 sends none), while a duplicate delivery of one event stays the same work.
        """
        if self.version_id is not None:
            return ("v", self.bucket, self.key, self.version_id)
        return ("e", self.bucket, self.key, self.etag or "", self.sequencer or self.event_time)

    @property
    def work_id(self) -> str:
        """Stable unique key of this piece of work in the report store: sha256 hex of the identity."""
        return hashlib.sha256(json.dumps(self.identity).encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (Celery serialises with JSON only)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ObjectEvent":
        """Inverse of :meth:`to_dict`; unknown keys are ignored so old workers read newer messages."""
        if not isinstance(data, Mapping):
            raise MalformedEventError(f"an ObjectEvent dict must be a mapping, not {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{name: value for name, value in data.items() if name in names})
        except (TypeError, ValueError) as exc:
            raise MalformedEventError(f"not an ObjectEvent dict: {exc}") from None


#: What one message body can carry: S3's object events, or the pipeline's own requeue request.
Event = ObjectEvent | RequeueEvent


def parse_body(body: str | bytes, key_filter: KeyFilter = KeyFilter()) -> list[Event]:
    """The object events in one SQS message body, keeping only keys ``key_filter`` matches.

    Returns ``[]`` for test events, ignored event types and filtered-out keys (a requeue request
    for a key outside the filter too).
    Raises MalformedEventError naming what is wrong when the body is not an event we understand.
    """
    document = _load_object(_body_text(body), "message body")
    return [event for event in _parse_document(document) if key_filter.matches(event.key)]


def sequencer_order(sequencer: str) -> int:
    """A number ordering the sequencers of one key: the greater one is the later event.

    AWS: "The sequencers can be of different lengths. To compare these values, first right pad the
    shorter value with zeros, and then do a lexicographical comparison." Padding every sequencer to
    SEQUENCER_DIGITS and reading it as hex gives that order for any pair; a plain ``int(s, 16)`` can
    invert it when the lengths differ. The result exceeds 64 bits: store the sequencer text (at most
    SEQUENCER_DIGITS long) and compare in Python. Raises ValueError for text that is not a sequencer.
    """
    if not _is_sequencer(sequencer):
        raise ValueError(f"not an S3 sequencer (1-{SEQUENCER_DIGITS} hex digits): {_excerpt(sequencer)}")
    return int(sequencer.ljust(SEQUENCER_DIGITS, "0"), 16)


def _body_text(body: str | bytes) -> str:
    """The body as text, refusing anything over MAX_BODY_BYTES or not UTF-8."""
    if isinstance(body, str):
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedEventError(
                f"message body is not UTF-8 text: unpaired surrogate at index {exc.start}"
            ) from None
    elif isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
    else:
        raise MalformedEventError(f"message body must be str or bytes, not {type(body).__name__}")
    if len(raw) > MAX_BODY_BYTES:
        raise MalformedEventError(f"message body is {len(raw)} bytes, over the {MAX_BODY_BYTES}-byte limit")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedEventError(f"message body is not UTF-8: invalid byte at offset {exc.start}") from None


def _load_object(text: str, what: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; ``what`` names it in the error."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedEventError(f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise MalformedEventError(f"{what} is JSON nested too deeply") from None
    if not isinstance(document, dict):
        raise MalformedEventError(f"{what} is JSON but not an object: got {_json_type(document)}")
    return document


def _parse_document(document: dict[str, Any]) -> list[Event]:
    """Dispatch on the envelope's shape."""
    if is_requeue(document):
        return [requeue_from_document(document)]
    if "Records" in document:
        return _parse_records(document["Records"], "s3")
    if _is_test_event(document):
        return []
    if document.get("Type") == "Notification" or "TopicArn" in document:
        return _parse_sns(document)
    if "detail-type" in document:
        return _parse_eventbridge(document)
    raise MalformedEventError(
        "unknown message shape: not an S3 notification, SNS notification or EventBridge event"
        f" (top-level keys: {_key_list(document)})"
    )


def _is_test_event(document: dict[str, Any]) -> bool:
    """S3 sends ``{"Service": "Amazon S3", "Event": "s3:TestEvent", ...}`` when notifications are configured."""
    return document.get("Event") == "s3:TestEvent"


def _parse_sns(envelope: dict[str, Any]) -> list[ObjectEvent]:
    """An SNS notification delivered to SQS without raw message delivery: S3's JSON is in ``Message``."""
    if envelope.get("Type") != "Notification":
        raise MalformedEventError(f"SNS message of Type {_excerpt(envelope.get('Type'))} is not a Notification")
    message = envelope.get("Message")
    if not isinstance(message, str):
        raise MalformedEventError(f"SNS Message must be a string holding S3's event JSON, got {_json_type(message)}")
    inner = _load_object(message, "SNS Message")
    if "Records" in inner:
        return _parse_records(inner["Records"], "sns")
    if _is_test_event(inner):
        return []
    raise MalformedEventError(f"SNS Message is not an S3 event notification (keys: {_key_list(inner)})")


def _parse_records(records: Any, source: str) -> list[ObjectEvent]:
    """Every record of an S3 notification; ignored event types drop out."""
    if not isinstance(records, list) or not records:
        got = "an empty array" if records == [] else _json_type(records)
        raise MalformedEventError(f"Records must be a non-empty array, got {got}")
    events = []
    for index, record in enumerate(records):
        event = _parse_record(record, f"Records[{index}]", source)
        if event is not None:
            events.append(event)
    return events


def _parse_record(record: Any, where: str, source: str) -> ObjectEvent | None:
    """One S3 notification record, validated in full even when its event type is ignored."""
    record = _as_object(record, where)
    event_name = _required(record, "eventName", str, where)
    kind = _kind_for_event_name(event_name, where)
    event_time = _required(record, "eventTime", str, where)
    s3 = _required(record, "s3", dict, where)
    bucket = _required(_required(s3, "bucket", dict, f"{where}.s3"), "name", str, f"{where}.s3.bucket")
    obj = _required(s3, "object", dict, f"{where}.s3")
    key = _decode_key(_required(obj, "key", str, f"{where}.s3.object"), f"{where}.s3.object.key")
    details = _object_details(obj, f"{where}.s3.object", _S3_OBJECT_FIELDS)
    if kind is None:
        return None
    return ObjectEvent(bucket, key, kind, event_name, event_time, source=source, **details)


def _parse_eventbridge(event: dict[str, Any]) -> list[ObjectEvent]:
    """An EventBridge event from ``aws.s3``; its key is not URL-encoded (see the module docstring)."""
    if event.get("source") != "aws.s3":
        raise MalformedEventError(f"EventBridge event from source {_excerpt(event.get('source'))}, not 'aws.s3'")
    detail_type = _required(event, "detail-type", str, "event")
    kind = _kind_for_detail_type(detail_type)
    event_time = _required(event, "time", str, "event")
    detail = _required(event, "detail", dict, "event")
    bucket = _required(_required(detail, "bucket", dict, "detail"), "name", str, "detail.bucket")
    obj = _required(detail, "object", dict, "detail")
    key = _required(obj, "key", str, "detail.object")
    details = _object_details(obj, "detail.object", _EVENTBRIDGE_OBJECT_FIELDS)
    if kind is None:
        return []
    return [ObjectEvent(bucket, key, kind, detail_type, event_time, source="eventbridge", **details)]


def _kind_for_event_name(event_name: str, where: str) -> str | None:
    """"created" / "removed" / "restored", None for a recognised type that is no work; raises otherwise."""
    # Documented names carry no "s3:" prefix; S3-compatible stores (MinIO) add it.
    name = event_name.removeprefix("s3:")
    if name in _EVENT_NAMES:
        return _EVENT_NAMES[name]
    for prefix, kind in _EVENT_NAME_PREFIXES.items():
        if name.startswith(prefix) and len(name) > len(prefix):
            return kind
    raise MalformedEventError(f"{where}: unknown event name {_excerpt(event_name)}")


def _kind_for_detail_type(detail_type: str) -> str | None:
    """The kind for an S3 EventBridge detail-type, None for one that is no work; raises for others."""
    if detail_type not in _DETAIL_TYPES:
        raise MalformedEventError(f"unknown EventBridge detail-type {_excerpt(detail_type)} from aws.s3")
    return _DETAIL_TYPES[detail_type]


def _decode_key(raw: str, where: str) -> str:
    """Undo S3's form-style URL encoding; a percent escape that is not UTF-8 is malformed, not guessed at."""
    try:
        return unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise MalformedEventError(f"{where} has percent escapes that are not UTF-8: {_excerpt(raw)}") from None


def _object_details(obj: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    """The optional size / etag / version_id / sequencer of an ``object`` block, checked and normalised."""
    size = _optional(obj, names["size"], int, where)
    if size is not None and size < 0:
        raise MalformedEventError(f"{where}.{names['size']} must not be negative, got {size}")
    etag = _optional(obj, names["etag"], str, where)
    version_id = _optional(obj, names["version_id"], str, where)
    sequencer = _optional(obj, names["sequencer"], str, where) or None
    if sequencer is not None and not _is_sequencer(sequencer):
        raise MalformedEventError(f"{where}.{names['sequencer']} is not a hex sequencer: {_excerpt(sequencer)}")
    return {
        "size": size,
        "etag": (etag or "").strip('"') or None,
        # S3 writes the literal "null" for objects stored while versioning was off or suspended.
        "version_id": None if version_id in (None, "", "null") else version_id,
        "sequencer": sequencer,
    }


def _is_sequencer(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= SEQUENCER_DIGITS and _HEX.fullmatch(value) is not None


def _as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEventError(f"{where} must be an object, got {_json_type(value)}")
    return value


def _required(container: dict[str, Any], name: str, expected: type, where: str) -> Any:
    """``container[name]``, which must be present, non-null, of type ``expected`` and not an empty string."""
    if container.get(name) is None:
        raise MalformedEventError(f"{where}: missing {name!r}")
    value = _typed(container[name], name, expected, where)
    if value == "":
        raise MalformedEventError(f"{where}.{name} must not be empty")
    return value


def _optional(container: dict[str, Any], name: str, expected: type, where: str) -> Any:
    """``container[name]`` checked against ``expected``, or None when absent or null."""
    value = container.get(name)
    return None if value is None else _typed(value, name, expected, where)


def _typed(value: Any, name: str, expected: type, where: str) -> Any:
    # bool is an int subclass in Python, but ``true`` is no size.
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise MalformedEventError(f"{where}.{name} must be {_JSON_TYPES[expected]}, got {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value, with a short excerpt for scalars."""
    if value is None:
        return "null"
    name = next((label for kind, label in _JSON_TYPES.items() if type(value) is kind), type(value).__name__)
    return name if isinstance(value, (dict, list)) else f"{name} {_excerpt(value)}"


def _excerpt(value: Any) -> str:
    """A value in JSON notation cut to EXCERPT_CHARS, so an error never carries a large body."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 3] + "..."


def _key_list(document: dict[str, Any]) -> str:
    """A few of an object's keys, for 'what did we get instead' messages."""
    keys = [_excerpt(str(key)) for key in sorted(document)[:6]]
    return ", ".join(keys) + (", ..." if len(document) > 6 else "") if keys else "none"


__all__ = ["MAX_BODY_BYTES", "Event", "KeyFilter", "ObjectEvent", "parse_body", "sequencer_order"]
