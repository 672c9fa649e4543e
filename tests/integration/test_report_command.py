"""`pipeline report` on known rows, on a SQLite file and on PostgreSQL (see conftest.db_url)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.report.schema import images
from pipeline.report.store import ReportStore
from tests.integration.test_report_store import event

EXPLICIT = [
    {"Name": "Explicit Nudity", "ParentName": "Explicit", "Confidence": 97.25, "TaxonomyLevel": 2, "Detector": "rekognition"},
    {"Name": "Explicit", "ParentName": "", "Confidence": 97.25, "TaxonomyLevel": 1, "Detector": "rekognition"},
    # Below PIPELINE_MIN_CONFIDENCE (80): not counted.
    {"Name": "Swimwear or Underwear", "ParentName": "", "Confidence": 41.0, "TaxonomyLevel": 1, "Detector": "rekognition"},
    # The same label from a second detector: the image still counts once for it.
    {"Name": "Explicit Nudity", "ParentName": "Explicit", "Confidence": 100.0, "TaxonomyLevel": 2, "Detector": "hashlist"},
]
WEAPONS = [{"Name": "Weapons", "ParentName": "Violence", "Confidence": 88.5, "TaxonomyLevel": 2, "Detector": "rekognition"},
           {"Name": "Explicit Nudity", "ParentName": "Explicit", "Confidence": 90.0, "TaxonomyLevel": 2, "Detector": "rekognition"}]

#: (key, outcome, labels, decided_at)
ROWS = [
    ("a.jpg", "clean", [], "2024-05-14T08:00:00+00:00"),
    ("b.jpg", "clean", [], "2024-05-14T23:59:59+00:00"),
    ("c.jpg", "blocked", EXPLICIT, "2024-05-14T12:00:00+00:00"),
    ("d.jpg", "clean", [], "2024-05-15T00:00:00+00:00"),
    ("e.jpg", "blocked", WEAPONS, "2024-05-15T10:00:00+00:00"),
    ("f.jpg", "failed", [], "2024-05-15T23:30:00-02:00"),  # 01:30 UTC on the 16th
    ("g.jpg", "pending", [], None),
]
DAYS = {
    "2024-05-14": {"clean": 2, "blocked": 1, "failed": 0, "deleted": 0, "superseded": 0},
    "2024-05-15": {"clean": 1, "blocked": 1, "failed": 0, "deleted": 0, "superseded": 0},
    "2024-05-16": {"clean": 0, "blocked": 0, "failed": 1, "deleted": 0, "superseded": 0},
}
LABELS = [("Explicit", "Explicit Nudity", 2), ("Explicit", "Explicit", 1), ("Violence", "Weapons", 1)]


@pytest.fixture
def known_rows(db_store: ReportStore, db_url: str) -> str:
    """ROWS in the store, each decided at its own time; returns the database URL."""
    for key, outcome, labels, decided_at in ROWS:
        row, _ = db_store.upsert_pending(event(key=f"content/images/{key}"))
        if outcome == "pending":
            continue
        db_store.record_decision(row.work_id, outcome=outcome, labels=labels)
        with db_store.engine.begin() as conn:
            conn.execute(images.update().where(images.c.work_id == row.work_id)
                         .values(decided_at=datetime.fromisoformat(decided_at)))
    return db_url


def report(db_url: str, *args: str) -> str:
    """`pipeline report ARGS` on ``db_url``; its output (it must exit 0)."""
    result = CliRunner().invoke(cli, ["report", *args], env={"PIPELINE_DATABASE_URL": db_url, "PIPELINE_MIN_CONFIDENCE": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_json_holds_every_count(known_rows: str) -> None:
    document = json.loads(report(known_rows, "--format", "json"))
    assert document["outcomes"] == {"pending": 1, "clean": 3, "blocked": 2, "failed": 1, "deleted": 0, "superseded": 0}
    assert document["total"] == 7
    assert [(x["category"], x["label"], x["images"]) for x in document["labels"]] == LABELS
    assert document["days"] == [{"day": day, **counts, "total": sum(counts.values())} for day, counts in DAYS.items()]
    assert (document["since"], document["until"], document["min_confidence"]) == (None, None, 80.0)


def test_csv_is_one_long_table_a_spreadsheet_reads(known_rows: str) -> None:
    rows = list(csv.DictReader(io.StringIO(report(known_rows, "--format", "csv"))))
    assert list(rows[0]) == ["table", "day", "outcome", "category", "label", "count"]
    outcome = {r["outcome"]: int(r["count"]) for r in rows if r["table"] == "outcome"}
    labels = [(r["category"], r["label"], int(r["count"])) for r in rows if r["table"] == "label"]
    days: dict[str, dict[str, int]] = {}
    for r in rows:
        if r["table"] == "day":
            days.setdefault(r["day"], {})[r["outcome"]] = int(r["count"])
    assert outcome == {"pending": 1, "clean": 3, "blocked": 2, "failed": 1, "deleted": 0, "superseded": 0}
    assert labels == LABELS
    assert days == DAYS


def test_the_table_reads_as_it_is(known_rows: str) -> None:
    assert report(known_rows) == """\
7 images (all rows)

outcome     images
pending          1
clean            3
blocked          2
failed           1
deleted          0
superseded       0

category  label            images
Explicit  Explicit Nudity       2
Explicit  Explicit              1
Violence  Weapons               1

day (UTC)   clean  blocked  failed  deleted  superseded  total
2024-05-14      2        1       0        0           0      3
2024-05-15      1        1       0        0           0      2
2024-05-16      0        0       1        0           0      1
"""


def test_since_and_until_bound_the_decision_time(known_rows: str) -> None:
    document = json.loads(report(known_rows, "--format", "json", "--since", "2024-05-15", "--until", "2024-05-16T01:00"))
    assert document["outcomes"] == {"pending": 0, "clean": 1, "blocked": 1, "failed": 0, "deleted": 0, "superseded": 0}
    assert [(x["label"], x["images"]) for x in document["labels"]] == [("Explicit Nudity", 1), ("Weapons", 1)]
    assert [x["day"] for x in document["days"]] == ["2024-05-15"]
    assert document["since"] == "2024-05-15T00:00:00+00:00"


def test_a_bad_time_is_a_usage_error(known_rows: str) -> None:
    result = CliRunner().invoke(cli, ["report", "--since", "yesterday"], env={"PIPELINE_DATABASE_URL": known_rows})
    assert result.exit_code == 2
    assert "'yesterday' is not an ISO-8601 date/time" in result.output
