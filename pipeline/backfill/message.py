"""Pure: a listed object -> the S3-event-shaped body the bridge reads, and whether it is known already. No I/O.

The body is an S3 event notification with one ``ObjectCreated:Backfill`` record: the bridge's
parser takes any ``ObjectCreated:`` name as an upload, and the report row keeps the name, so a
backfilled image can be told from a live one. The key is URL-encoded as S3 encodes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timezone
from typing import Any
from urllib.parse import quote_plus

from pipeline.backfill.listing import Listed
from pipeline.events import KeyFilter, ObjectEvent, parse_body
from pipeline.outcomes import DELETED, SUPERSEDED

#: ``eventName`` of a backfill record.
EVENT_NAME = "ObjectCreated:Backfill"
#: ``eventSource`` of a backfill record (S3's own say ``aws:s3``; the bridge does not read it).
EVENT_SOURCE = "pipeline:backfill"
#: Every key passes: the caller filters before building.
_ANY_KEY = KeyFilter(prefix="", suffixes=())


def event_time(listed: Listed) -> str:
    """LastModified as S3 writes ``eventTime``: ``2024-05-14T09:26:01.000Z``."""
    return listed.last_modified.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def build_body(bucket: str, listed: Listed) -> str:
    """The notification body for one listed object."""
    obj: dict[str, Any] = {"key": quote_plus(listed.key, safe="/"), "size": listed.size, "eTag": listed.etag}
    if listed.version_id is not None:
        obj["versionId"] = listed.version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": EVENT_SOURCE,
        "eventTime": event_time(listed),
        "eventName": EVENT_NAME,
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"}, "object": obj},
    }
    return json.dumps({"Records": [record]}, ensure_ascii=False)


def event_for(body: str) -> ObjectEvent:
    """The event the bridge will read from ``body`` (so its work_id is the bridge's own)."""
    event, = parse_body(body, _ANY_KEY)
    assert isinstance(event, ObjectEvent)
    return event


def already_known(listed: Listed, rows: Iterable[Any]) -> bool:
    """True when the report store already holds this object's bytes (decided, pending or deleted).

    ``rows`` are the store's rows for the object's key. A version is known by its version id. An
    unversioned key is known when its latest row (the last upload the pipeline saw) has the same
    eTag and was not deleted or superseded: the bytes in the bucket are the ones judged.
    """
    rows = list(rows)
    if listed.version_id is not None:
        return any(row.version_id == listed.version_id for row in rows)
    unversioned = [row for row in rows if row.version_id is None]
    if not unversioned:
        return False
    latest = max(unversioned, key=lambda row: row.id)
    return latest.etag == listed.etag and latest.outcome not in (DELETED, SUPERSEDED)


__all__ = ["EVENT_NAME", "already_known", "build_body", "event_for", "event_time"]
