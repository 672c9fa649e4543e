"""``pipeline backfill s3://bucket/prefix``: send objects that existed before the pipeline through it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from pipeline.commands.common import configure_logging, load_settings, progress, resolve_queue
from pipeline.settings import Settings

#: Exit status after Ctrl-C or SIGTERM, the shell's 128 + SIGINT.
INTERRUPTED_EXIT = 130


@click.command()
@click.argument("target", metavar="s3://BUCKET/PREFIX")
@click.option("--dry-run", is_flag=True, help="List and count; send nothing, keep the checkpoint as it is.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages, then stop (run again to continue).")
@click.option("--restart", is_flag=True, help="Ignore the checkpoint of an earlier run and list from the start.")
def backfill(target: str, dry_run: bool, limit: int | None, restart: bool) -> None:
    """List existing objects under TARGET and send the ones not yet judged through the events queue.

    Skips keys outside PIPELINE_PREFIX/PIPELINE_SUFFIXES and objects the report store already holds.
    Ctrl-C stops after the batch in hand; the next run continues after the last key sent.
    """
    from pipeline.backfill.target import listing_prefix, parse_target

    settings = load_settings()
    configure_logging(settings)
    try:
        bucket, requested = parse_target(target)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from None
    if bucket not in settings.effective_allowed_buckets:
        raise click.UsageError(f"bucket {bucket} is not in PIPELINE_ALLOWED_BUCKETS "
                               f"({', '.join(settings.effective_allowed_buckets)}): the bridge would refuse its events")
    prefix = listing_prefix(requested, settings.prefix)
    if prefix is None:
        raise click.UsageError(f"prefix {requested!r} is outside PIPELINE_PREFIX {settings.prefix!r}: "
                               "nothing there is moderated")
    _run(settings, bucket, requested, prefix, dry_run=dry_run, limit=limit, restart=restart)


def _run(settings: Settings, bucket: str, requested: str, prefix: str, *, dry_run: bool, limit: int | None,
         restart: bool) -> None:
    from pipeline import aws
    from pipeline.backfill.checkpoint import Checkpoint
    from pipeline.backfill.run import Backfill
    from pipeline.errors import PipelineError
    from pipeline.events import KeyFilter
    from pipeline.report import migrate
    from pipeline.report.store import ReportStore

    migrate.ensure_current(settings.database_url)
    sqs = aws.client("sqs")
    events_url = resolve_queue(sqs, settings.events_queue, "PIPELINE_EVENTS_QUEUE")
    warn_if_queued(sqs, events_url)
    store = ReportStore.from_url(settings.database_url)
    checkpoint = Checkpoint.for_target(settings.state_dir, bucket, requested)
    try:
        with _stop_requests() as should_stop, progress(None, "backfill") as advance:
            report = Backfill(aws.client("s3"), sqs, events_url, store, bucket, prefix,
                              KeyFilter.from_settings(settings), checkpoint, restart=restart, limit=limit,
                              dry_run=dry_run, progress=advance, should_stop=should_stop).run()
    except PipelineError as exc:
        raise click.ClickException(f"stopped: {exc}; run the same command to continue from the checkpoint") from None
    except KeyboardInterrupt:  # the second Ctrl-C (or SIGTERM): an interruption too, not click's "Aborted!" (1)
        click.echo("stopped now: the batch in hand may be sent again when you run the same command "
                   "(harmless: the bridge drops duplicates)", err=True)
        sys.exit(INTERRUPTED_EXIT)
    finally:
        store.dispose()
    for line in report.summary(dry_run=dry_run):
        click.echo(line)
    if report.failed:
        raise click.ClickException(f"{len(report.failed)} messages could not be sent; run again to retry them")
    if report.stopped == "interrupted":
        sys.exit(INTERRUPTED_EXIT)


def warn_if_queued(sqs: Any, events_url: str) -> None:
    """Warn on stderr when the events queue still holds messages (they may be an earlier run's, sent again)."""
    from pipeline.aws import queue_depth
    from pipeline.backfill.queued import queued_warning
    from pipeline.errors import PipelineError

    try:
        warning = queued_warning(queue_depth(sqs, events_url, in_flight=True))
    except PipelineError as exc:  # only a warning is lost; the sends will say whether SQS works
        warning = f"warning: could not read the events queue's depth ({exc}); a previous backfill's messages may be sent again"
    if warning:
        click.echo(warning, err=True)


@contextmanager
def _stop_requests() -> Iterator[Callable[[], bool]]:
    """``should_stop()``, True once SIGINT or SIGTERM arrived; a second Ctrl-C stops at once."""
    asked: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)
        click.echo("stopping after the batch in hand (Ctrl-C again to stop now)", err=True)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(asked)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
