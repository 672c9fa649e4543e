"""``pipeline review list|approve|reject``: the moderators' side of the review queue.

The report database is the source of truth for what awaits review; the SQS review queue only
notifies (its messages expire). Decisions act on the exact object version that was judged and
are recorded with who, when and an optional note; the latest decision on a version wins, and no
later re-detection of that version (a duplicate event, the sweeper, ``pipeline requeue``) undoes it.
"""

from __future__ import annotations

import getpass
import json
from typing import TYPE_CHECKING, Any

import click

from pipeline.commands.common import configure_logging, load_settings
from pipeline.errors import PipelineError
from pipeline.review.decisions import APPROVED, REJECTED
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.report.store import ReportStore

#: Rows ``list`` shows unless --limit says otherwise.
DEFAULT_LIST_LIMIT = 50


@click.group()
def review() -> None:
    """List flagged images and record moderators' approve/reject decisions."""


@review.command(name="list")
@click.option("--limit", default=DEFAULT_LIST_LIMIT, show_default=True, type=click.IntRange(min=1),
              help="At most this many images.")
@click.option("--format", "output", default="table", show_default=True, type=click.Choice(["table", "json"]))
def list_command(limit: int, output: str) -> None:
    """Flagged images no moderator has decided yet, newest first."""
    from pipeline.decision import Policy
    from pipeline.review.actions import as_dict, awaiting_review

    settings = load_settings()
    store = _store(settings)
    try:
        rows = awaiting_review(store, Policy.from_settings(settings), limit=limit)
    except PipelineError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.dispose()
    items = [as_dict(row) for row in rows]
    if output == "json":
        click.echo(json.dumps(items, indent=2, sort_keys=True))
        return
    for line in table_lines(items):
        click.echo(line)


def _decision_options(func: Any) -> Any:
    func = click.option("--note", help="Free text kept with the decision.")(func)
    func = click.option("--by", "reviewer", help="Who decides [default: the OS user].")(func)
    return click.argument("work_id")(func)


@review.command()
@_decision_options
def approve(work_id: str, reviewer: str | None, note: str | None) -> None:
    """Let WORK_ID's image be served: remove its block tag (status tag `clean` when on)."""
    _decide(work_id, APPROVED, reviewer, note)


@review.command()
@_decision_options
def reject(work_id: str, reviewer: str | None, note: str | None) -> None:
    """Keep WORK_ID's image blocked: its block tag stays or is written again (status `blocked`)."""
    _decide(work_id, REJECTED, reviewer, note)


def _decide(work_id: str, decision: str, reviewer: str | None, note: str | None) -> None:
    from pipeline import aws
    from pipeline.review.actions import decide

    who = resolve_reviewer(reviewer)
    settings = load_settings()
    configure_logging(settings)
    store = _store(settings)
    try:
        result = decide(store, aws.client("s3"), settings, work_id=work_id, decision=decision, reviewer=who, note=note)
    except PipelineError as exc:
        raise click.ClickException(f"{work_id}: {exc}") from None
    finally:
        store.dispose()
    row = result.row
    version = f" version {row.version_id}" if row.version_id else ""
    click.echo(f"{decision} s3://{row.bucket}/{row.key}{version} by {row.reviewed_by} at {row.reviewed_at.isoformat()}")
    if result.tags is None:
        newer = (f"the newer upload is work id {result.newer_work_id}" if result.newer_work_id
                 else "the report database has no newer row for the key")
        click.echo(f"no tag changed: {result.untagged_because}; the decision is recorded; {newer}")
    elif result.tags.dropped:
        click.echo(f"warning: no free tag slot for {', '.join(result.tags.dropped)}: the object has S3's 10 tags; "
                   "the fail-closed policy will not serve it", err=True)


def resolve_reviewer(given: str | None) -> str:
    """``--by``, or the OS user; a usage error when neither names anyone."""
    if given is not None:
        if not given.strip():
            raise click.BadParameter("must not be empty", param_hint="--by")
        return given.strip()
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = ""
    if not user:
        raise click.UsageError("cannot tell who you are: give --by NAME")
    return user


def table_lines(items: list[dict[str, Any]]) -> list[str]:
    """The ``list`` table: one line per image, or a line saying there is nothing to review."""
    if not items:
        return ["nothing awaits review"]
    lines = [f"{'work_id':<64} {'age':>4}  {'outcome':<7} {'version':<12} {'labels':<30} url"]
    for item in items:
        labels = ", ".join(item["labels"]) or "-"
        lines.append(f"{item['work_id']:<64} {format_age(item['age_seconds']):>4}  {item['outcome']:<7} "
                     f"{(item['version_id'] or '-')[:12]:<12} {labels[:30]:<30} {item['url']}")
    lines.append(f"{len(items)} awaiting review")
    return lines


def format_age(seconds: float) -> str:
    """A short age: 45s, 12m, 3h, 9d."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _store(settings: Settings) -> ReportStore:
    """The report store, once the database is at the current schema (else exit 2 naming `pipeline migrate`)."""
    from pipeline.report import migrate
    from pipeline.report.store import ReportStore

    migrate.ensure_current(settings.database_url)
    return ReportStore.from_url(settings.database_url)
