"""``pipeline report``: counts by outcome, label and day, as a table, CSV or JSON."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from pipeline.commands.common import load_settings
from pipeline.report.render import FORMATS


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
              help="table for a terminal; csv (one long table with a `table` column) or json (one object).")
@click.option("--since", help="Only rows decided at or after this: ISO-8601 in UTC (2024-05-14T09:30) or an age (2h, 7d).")
@click.option("--until", help="Only rows decided before this (same forms).")
@click.option("--min-confidence", type=click.FloatRange(0, 100),
              help="Count labels at or above this confidence [default: PIPELINE_MIN_CONFIDENCE].")
def report(fmt: str, since: str | None, until: str | None, min_confidence: float | None) -> None:
    """Images by outcome, by label (top-level category and name) and by day decided (UTC).

    Without --since/--until every row counts, pending ones too; with either, only rows decided
    in that window.
    """
    from pipeline.report import migrate
    from pipeline.report.render import render
    from pipeline.report.store import ReportStore
    from pipeline.report.summary import summarize
    from pipeline.requeue.selection import parse_when

    settings = load_settings()
    now = datetime.now(timezone.utc)
    try:
        start = parse_when(since, now) if since else None
        end = parse_when(until, now) if until else None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if start is not None and end is not None and start >= end:
        raise click.UsageError(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
    migrate.ensure_current(settings.database_url)
    store = ReportStore.from_url(settings.database_url)
    try:
        summary = summarize(store.counts_by_outcome(start, end), store.iter_decisions(start, end),
                            min_confidence=settings.min_confidence if min_confidence is None else min_confidence,
                            since=start, until=end)
    finally:
        store.dispose()
    click.echo(render(summary, fmt), nl=False)
