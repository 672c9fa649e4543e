"""``pipeline requeue``: send failed (or clean) images through detect -> tag -> report again.

The rows are selected in the report store and each becomes a small request on the events queue
(:mod:`pipeline.requeue`), so a requeue waits under the same backpressure as new uploads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from pipeline.commands.common import configure_logging, load_settings, progress, resolve_queue
from pipeline.errors import PipelineError
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.report.store import RowSelection

#: Why ``--outcome blocked`` is refused (the tag step adds the block tag and never removes it).
_BLOCKED_REFUSED = ("blocked images are not judged again: their block tag is never removed, so a clean "
                    "decision would leave the object hidden; a duplicate event already re-checks the tag")


@click.command()
@click.option("--outcome", "outcomes", multiple=True, default=("failed",), show_default=True,
              type=click.Choice(["failed", "clean", "blocked"]), help="Rows with this outcome (repeatable).")
@click.option("--error-code", "error_codes", multiple=True, help="Only rows with this error code (repeatable).")
@click.option("--prefix", help="Only keys that start with this.")
@click.option("--bucket", help="Only rows of this bucket.")
@click.option("--since", help="Only rows decided at or after this: ISO-8601 in UTC (2024-05-14T09:30) or an age (2h, 7d).")
@click.option("--until", help="Only rows decided before this (same forms) [default: now].")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many rows (or dead letters).")
@click.option("--reason", default="pipeline requeue", show_default=True, help="Free text carried to the bridge's log.")
@click.option("--dry-run", is_flag=True, help="Count and show what would be sent; send nothing.")
@click.option("--from-dlq", is_flag=True, help="Move the dead-letter queue's messages back to the events queue.")
def requeue(outcomes: tuple[str, ...], error_codes: tuple[str, ...], prefix: str | None, bucket: str | None,
            since: str | None, until: str | None, limit: int | None, reason: str, dry_run: bool, from_dlq: bool) -> None:
    """Send failed images through detect -> tag -> report again, through the events queue."""
    settings = load_settings()
    configure_logging(settings)
    if from_dlq:
        if error_codes or prefix or bucket or since or until or outcomes != ("failed",):
            raise click.UsageError("--from-dlq moves whole messages: it takes only --limit and --dry-run")
        _requeue_dead_letters(settings, limit=limit, dry_run=dry_run)
        return
    if "blocked" in outcomes:
        raise click.BadParameter(_BLOCKED_REFUSED, param_hint="--outcome")
    from pipeline.requeue.selection import build_selection

    try:
        selection = build_selection(outcomes=outcomes, error_codes=error_codes, prefix=prefix, bucket=bucket,
                                    since=since, until=until)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    _requeue_rows(settings, selection, limit=limit, reason=reason, dry_run=dry_run)


def _requeue_rows(settings: Settings, selection: RowSelection, *, limit: int | None, reason: str, dry_run: bool) -> None:
    from pipeline import aws
    from pipeline.events import KeyFilter
    from pipeline.report import migrate
    from pipeline.report.store import ReportStore
    from pipeline.requeue.rows import count_selected, requeue_rows

    migrate.ensure_current(settings.database_url)
    store = ReportStore.from_url(settings.database_url)
    sqs = aws.client("sqs")
    events_url = resolve_queue(sqs, settings.events_queue, "PIPELINE_EVENTS_QUEUE")
    try:
        with progress(count_selected(store, selection, limit), "requeueing") as advance:
            report = requeue_rows(store, sqs, events_url, selection, key_filter=KeyFilter.from_settings(settings),
                                  reason=reason, limit=limit, dry_run=dry_run, progress=advance)
    except PipelineError as exc:
        raise click.ClickException(f"stopped: {exc}") from None
    finally:
        store.dispose()
    for line in report.summary(dry_run=dry_run):
        click.echo(line)
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} of {report.selected} requeue messages could not be sent")


def _requeue_dead_letters(settings: Settings, *, limit: int | None, dry_run: bool) -> None:
    from pipeline import aws
    from pipeline.requeue.dlq import MoveReport, move_dead_letters, queue_depth

    sqs = aws.client("sqs")
    dead_letter_url = resolve_queue(sqs, settings.dead_letter_queue, "PIPELINE_DEAD_LETTER_QUEUE")
    events_url = resolve_queue(sqs, settings.events_queue, "PIPELINE_EVENTS_QUEUE")
    try:
        if dry_run:
            report = MoveReport(depth=queue_depth(sqs, dead_letter_url))
        else:
            with progress(queue_depth(sqs, dead_letter_url), "moving") as advance:
                report = move_dead_letters(sqs, dead_letter_url, events_url, limit=limit, progress=advance)
    except PipelineError as exc:
        raise click.ClickException(f"stopped: {exc}") from None
    for line in report.summary(dry_run=dry_run):
        click.echo(line)
    if not report.complete:
        raise click.ClickException("some dead letters were not moved")
