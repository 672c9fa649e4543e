"""``pipeline setup [--dry-run]``: create or update the queues, queue policy and bucket notification."""

from __future__ import annotations

import click

from pipeline.commands.common import configure_logging, load_settings


@click.command()
@click.option("--dry-run", is_flag=True, help="Print what would change (create/update/unchanged); change nothing.")
def setup(dry_run: bool) -> None:
    """Create or update, idempotently, the SQS queues, the queue policy and the bucket notification.

    The bucket (PIPELINE_BUCKET) must exist. Other teams' notification rules and queue policy
    statements are kept. AWS endpoints come from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SQS.
    """
    from botocore.exceptions import BotoCoreError

    from pipeline import aws, provision
    from pipeline.errors import PipelineError

    settings = load_settings()
    configure_logging(settings)
    s3, sqs = aws.client("s3"), aws.client("sqs")
    try:
        plan = provision.plan_setup(s3, sqs, settings)
        for change in plan.changes():
            click.echo(change.line())
        if dry_run or plan.up_to_date:
            click.echo("dry run: nothing changed" if dry_run else "everything is up to date")
            return
        queues = provision.apply_setup(s3, sqs, plan)
    except (PipelineError, BotoCoreError) as exc:
        raise click.ClickException(f"setup stopped: {exc}") from None
    click.echo(f"done; events queue {queues.events_url}")
