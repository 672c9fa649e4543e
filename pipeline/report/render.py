"""Pure: a :class:`~pipeline.report.summary.Summary` as a readable table, CSV or JSON text. No I/O.

CSV is one table in long form, so a spreadsheet reads it as it is and a pivot table regroups it:
``table,day,outcome,category,label,count``, with ``table`` one of ``outcome``, ``label``, ``day``
and the columns that do not apply to a row left empty. JSON is one object.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pipeline.report.summary import DAY_OUTCOMES, Summary

FORMATS = ("table", "csv", "json")
CSV_COLUMNS = ("table", "day", "outcome", "category", "label", "count")


def render(summary: Summary, fmt: str) -> str:
    """``summary`` in ``fmt`` (one of FORMATS), ending with a newline."""
    if fmt == "json":
        return json.dumps(as_document(summary), indent=2, sort_keys=False) + "\n"
    if fmt == "csv":
        return as_csv(summary)
    if fmt == "table":
        return as_table(summary)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def as_document(summary: Summary) -> dict[str, Any]:
    """The JSON object: window, outcome counts, labels and days."""
    return {
        "since": summary.since.isoformat() if summary.since else None,
        "until": summary.until.isoformat() if summary.until else None,
        "min_confidence": summary.min_confidence,
        "total": summary.total,
        "outcomes": summary.outcomes,
        "labels": [{"category": c, "label": name, "images": n} for c, name, n in summary.labels],
        "days": [{"day": day, **counts, "total": sum(counts.values())} for day, counts in summary.days.items()],
    }


def as_csv(summary: Summary) -> str:
    """The long-form CSV (see the module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for outcome, count in summary.outcomes.items():
        writer.writerow(["outcome", "", outcome, "", "", count])
    for category, name, count in summary.labels:
        writer.writerow(["label", "", "", category, name, count])
    for day, counts in summary.days.items():
        for outcome, count in counts.items():
            writer.writerow(["day", day, outcome, "", "", count])
    return out.getvalue()


def as_table(summary: Summary) -> str:
    """Three aligned tables for a terminal."""
    window = (f"decided from {summary.since.isoformat() if summary.since else 'the start'} to "
              f"{summary.until.isoformat() if summary.until else 'now'}") if summary.since or summary.until else "all rows"
    sections = [
        [f"{summary.total} images ({window})"],
        _aligned([("outcome", "images"), *[(o, str(n)) for o, n in summary.outcomes.items()]]),
        _aligned([("category", "label", "images"), *[(c, name, str(n)) for c, name, n in summary.labels]], left=2)
        if summary.labels else [f"no labels at or above confidence {summary.min_confidence:g}"],
        _aligned([("day (UTC)", *DAY_OUTCOMES, "total"),
                  *[(day, *(str(counts[o]) for o in DAY_OUTCOMES), str(sum(counts.values())))
                    for day, counts in summary.days.items()]])
        if summary.days else ["no decisions"],
    ]
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"


def _aligned(rows: list[tuple[str, ...]], left: int = 1) -> list[str]:
    """Rows in columns: the first ``left`` columns (text) left-aligned, the others (numbers) right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


__all__ = ["CSV_COLUMNS", "FORMATS", "as_csv", "as_document", "as_table", "render"]
