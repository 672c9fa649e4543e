"""``pipeline demo``: ``up --local``, upload the bundled samples, print each decision, stop.

One sample (``known-bad-copy.jpg``) is a resized, re-encoded copy of an image on the demo's
known-bad hash list; it must come back blocked and tagged, the others clean. One upload carries
an owner's tags (kept when the block tag is added) and one lands outside the watched prefix
(left alone). Exits 0 only when every decision is the expected one.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.detectors.base import ImageRef
from pipeline.local.processes import free_port
from pipeline.local.stack import LocalStack
from pipeline.report.store import ImageRow, ReportStore
from pipeline.settings import Settings, local_database_url
from pipeline.tagging import read_tags

SAMPLES = Path(__file__).parent / "samples"
#: Where under the watched prefix the demo uploads.
DEMO_FOLDER = "demo/"
#: The sample that is a copy of a known-bad hash-list entry.
KNOWN_BAD_COPY = "known-bad-copy.jpg"
#: The original of that entry: on the list, so not uploaded.
KNOWN_BAD_ORIGINAL = "known-bad.jpg"
#: Tags an owner put on one upload; they must survive the block tag.
OWNER_TAGS = "owner=demo-user&project=moderation-demo"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Upload:
    """One object the demo uploads and what it expects of it."""

    key: str
    path: Path
    expected: str | None  # None: outside the prefix, no decision expected
    tagging: str = ""


def plan_uploads(settings: Settings) -> list[Upload]:
    """Every bundled sample under the prefix, the known-bad copy with owner tags, one outside the prefix."""
    uploads = []
    for path in sorted(SAMPLES.iterdir()):
        if path.name == KNOWN_BAD_ORIGINAL or path.suffix.lower() not in settings.suffixes:
            continue
        bad = path.name == KNOWN_BAD_COPY
        uploads.append(Upload(settings.prefix + DEMO_FOLDER + path.name, path, "blocked" if bad else "clean",
                              OWNER_TAGS if bad else ""))
    uploads.append(Upload("elsewhere/" + KNOWN_BAD_COPY, SAMPLES / KNOWN_BAD_COPY, None))
    return uploads


def run_demo(settings: Settings, env: dict[str, str], *, timeout: float) -> int:
    """Run the whole demo; returns the process exit code."""
    with tempfile.TemporaryDirectory(prefix="pipeline-demo-") as state:
        settings = _demo_settings(settings, Path(state))
        stack = LocalStack(settings, env)
        endpoints = stack.start()
        try:
            print("local stack up: " + ", ".join(f"{k}={v}" for k, v in endpoints.items()), flush=True)
            uploads = plan_uploads(settings)
            s3 = stack.client("s3")
            for upload in uploads:
                _upload(s3, settings.bucket, upload)
            rows = wait_for_decisions(ReportStore.from_url(settings.database_url), settings.bucket,
                                      [u for u in uploads if u.expected], timeout)
            lines, ok = summarise(s3, settings, uploads, rows)
            print("\n".join(lines), flush=True)
        finally:
            stack.stop()
    print("demo passed" if ok else "demo FAILED: see the table above", flush=True)
    return 0 if ok else 1


def wait_for_decisions(store: ReportStore, bucket: str, uploads: list[Upload], timeout: float) -> dict[str, ImageRow]:
    """Poll the report store until every upload has a terminal row, or time runs out."""
    wanted = {u.key for u in uploads}
    deadline = time.monotonic() + timeout
    rows: dict[str, ImageRow] = {}
    while time.monotonic() < deadline:
        rows = {r.key: r for r in store.find(bucket=bucket) if r.key in wanted and r.outcome != "pending"}
        if len(rows) == len(wanted):
            break
        time.sleep(POLL_SECONDS)
    return rows


def summarise(s3: Any, settings: Settings, uploads: list[Upload], rows: dict[str, ImageRow]) -> tuple[list[str], bool]:
    """The table the demo prints, and whether every decision is the expected one."""
    header = ("key", "outcome", "labels", "tags read back from S3", "seconds")
    table, ok = [header], True
    for upload in uploads:
        row = rows.get(upload.key)
        outcome = row.outcome if row else ("(left alone)" if upload.expected is None else "(no decision)")
        tags = read_tags(s3, ImageRef(settings.bucket, upload.key))
        tag_text = ", ".join(f"{t['Key']}={t['Value']}" for t in tags) or "-"
        ok &= outcome == (upload.expected or "(left alone)")
        ok &= _tags_as_expected(settings, upload, tags)
        table.append((upload.key, outcome, _labels(row), tag_text, _seconds(row)))
    return _format(table), ok


def _tags_as_expected(settings: Settings, upload: Upload, tags: list[dict[str, str]]) -> bool:
    has_block = {"Key": settings.tag_key, "Value": settings.tag_value} in tags
    owner_kept = all({"Key": k, "Value": v} in tags for k, v in (p.split("=") for p in upload.tagging.split("&") if p))
    return has_block == (upload.expected == "blocked") and owner_kept


def _upload(s3: Any, bucket: str, upload: Upload) -> None:
    extra = {"Tagging": upload.tagging} if upload.tagging else {}
    content_type = "image/png" if upload.path.suffix.lower() == ".png" else "image/jpeg"
    s3.put_object(Bucket=bucket, Key=upload.key, Body=upload.path.read_bytes(), ContentType=content_type, **extra)


def _labels(row: ImageRow | None) -> str:
    if row is None or not row.labels:
        return "-"
    return "; ".join(f"{item['Name']} ({item['Confidence']:.0f})" for item in row.labels)


def _seconds(row: ImageRow | None) -> str:
    if row is None or row.decided_at is None or row.event_time is None:
        return "-"
    return f"{(row.decided_at - row.event_time).total_seconds():.2f}"


def _format(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _demo_settings(settings: Settings, state: Path) -> Settings:
    """A fresh state directory (and SQLite file, unless a database was configured), a free Flower port, no metrics."""
    changes: dict[str, Any] = {"state_dir": str(state), "flower_port": free_port(), "metrics_port": 0}
    if settings.database_url == local_database_url(settings.state_dir):
        changes["database_url"] = local_database_url(state)
    return settings.replace(**changes)

