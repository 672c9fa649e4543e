"""``pipeline status``: queue depths, workers online, the shared limiter, pending rows.

The data comes from :mod:`pipeline.monitoring.snapshot` (the bridge's scrape-time gauges read
the same functions). A part that cannot be reached, or one SQS queue that cannot be read, is shown
as unavailable with the reason and the exit code is 1; the command itself never fails with a traceback.
That holds for a database URL that cannot work too (PIPELINE_DATABASE_URL=nonsense): the pending part
is unavailable with the reason naming the variable, like any other part whose service is misconfigured
or down, so the broker, SQS and the limiter are still shown. A service that does not answer is
unavailable after a few seconds ("timed out"), never a hang.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from pipeline.commands.common import configure_logging, load_settings

if TYPE_CHECKING:
    from pipeline.monitoring.snapshot import QueueDepth, Reading, Snapshot


@click.command()
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="A table for people, or one JSON object.")
def status(output: str) -> None:
    """Show queue depths, workers online, the shared rate limiter and pending rows."""
    from pipeline import aws
    from pipeline.app import create_app
    from pipeline.monitoring.snapshot import gather, read
    from pipeline.report.store import ReportStore

    settings = load_settings()
    configure_logging(settings)
    app = create_app(settings)
    store = read(lambda: ReportStore.from_url(settings.database_url))
    try:
        snap = gather(settings, app=app, sqs=aws.snapshot_client("sqs"), store=store)
    finally:
        if store.value is not None:
            store.value.dispose()
        app.close()
    click.echo(json.dumps(snapshot_dict(snap), sort_keys=True) if output == "json" else "\n".join(table_lines(snap)))
    if not snap.complete:
        sys.exit(1)


def snapshot_dict(snap: Snapshot) -> dict[str, Any]:
    """Part -> {"available": bool, ...values} or {"available": false, "reason": ...}."""
    return {name: _part_dict(name, reading, snap) for name, reading in snap.parts().items()}


def _part_dict(name: str, reading: Reading[Any], snap: Snapshot) -> dict[str, Any]:
    if not reading.available:
        return {"available": False, "reason": reading.error}
    value = reading.value
    if name in ("broker_queues", "sqs_queues"):
        return {"available": True, "queues": {q.role: _queue_dict(q) for q in value}}
    if name == "workers":
        return {"available": True, "online": len(value), "names": value}
    if name == "limiter":
        if value is None:
            return {"available": True, "enabled": False, "state": snap.limiter_absent}
        return {"available": True, "enabled": True, "configured_rate": value.configured_rate,
                "current_rate": round(value.current_rate, 3), "last_throttle_age_seconds": _round(value.last_throttle_age),
                "last_cut_age_seconds": _round(value.last_cut_age)}
    return {"available": True, "rows": value.rows, "oldest_age_seconds": _round(value.oldest_age)}


def _queue_dict(queue: QueueDepth) -> dict[str, Any]:
    if not queue.available:
        return {"name": queue.name, "available": False, "reason": queue.error}
    return {"name": queue.name, "depth": queue.depth}


def table_lines(snap: Snapshot) -> list[str]:
    """The human table: one line per value, or one line saying why a part is unavailable."""
    rows = [("part", "item", "value")]
    for name, reading in snap.parts().items():
        rows += [(name, item, value) for item, value in _part_rows(name, reading, snap)]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    return [f"{part:<{width[0]}}  {item:<{width[1]}}  {value}".rstrip() for part, item, value in rows]


def _part_rows(name: str, reading: Reading[Any], snap: Snapshot) -> list[tuple[str, str]]:
    if not reading.available:
        return [("unavailable", str(reading.error))]
    part = _part_dict(name, reading, snap)
    if name in ("broker_queues", "sqs_queues"):
        return [(role, f"{q['depth']}  ({q['name']})" if "depth" in q else f"unavailable  ({q['name']}): {q['reason']}")
                for role, q in part["queues"].items()]
    if name == "workers":
        return [("online", f"{part['online']}  {' '.join(part['names'])}".rstrip())]
    if name == "limiter":
        if not part["enabled"]:
            from pipeline.monitoring.snapshot import LIMITER_ABSENT_WHY

            return [(part["state"], LIMITER_ABSENT_WHY[part["state"]])]
        return [("rate", f"{part['current_rate']:g} of {part['configured_rate']:g} calls/s"),
                ("last throttle", _ago(part["last_throttle_age_seconds"])),
                ("last cut", _ago(part["last_cut_age_seconds"]))]
    return [("rows", str(part["rows"])), ("oldest", _ago(part["oldest_age_seconds"]))]


def _ago(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s ago"


def _round(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)
