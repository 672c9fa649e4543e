"""The ``pipeline`` command (also ``python -m pipeline``)."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from typing import Any

import click

from pipeline.commands.common import configure_logging, load_settings, resolve_queue
from pipeline.errors import ConfigurationError, PipelineError


def _raise_interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _stop_signals_as_interrupt() -> None:
    """SIGTERM, SIGHUP (terminal closed) and SIGINT (Ctrl-C) all stop the supervisors cleanly.

    SIGINT is installed explicitly: a shell starts background jobs with it ignored.
    """
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _raise_interrupt)


#: What a missing AWS region means here (botocore 1.44 reads AWS_DEFAULT_REGION, not AWS_REGION).
NO_REGION = "no AWS region: set AWS_DEFAULT_REGION (the bucket's region; Rekognition must run there too)"


def main() -> None:
    """Entry point: a configuration error anywhere in start-up ends with its message, not a traceback."""
    from botocore.exceptions import NoRegionError

    try:
        cli()
    except ConfigurationError as exc:
        click.echo(f"Error: configuration error: {exc}", err=True)
        sys.exit(2)
    except NoRegionError:  # boto3 found no region in its variables or config files
        click.echo(f"Error: configuration error: {NO_REGION}", err=True)
        sys.exit(2)


@click.group()
def cli() -> None:
    """Moderate images uploaded to S3: S3 events -> SQS -> bridge -> Celery detect/tag/report."""


@cli.command()
@click.option("--local", is_flag=True, help="Start Redis, a moto S3/SQS server and the resources too (no AWS).")
def up(local: bool) -> None:
    """Run worker, bridge and Flower in the foreground until Ctrl-C."""
    from pipeline.local.stack import LocalStack, run_forever

    settings = load_settings(local=local)
    configure_logging(settings)
    stack = LocalStack(settings, dict(os.environ), local=local)
    _stop_signals_as_interrupt()
    try:
        endpoints = stack.start()
    except ConfigurationError:
        raise
    except (PipelineError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(f"could not start: {exc}") from None
    except KeyboardInterrupt:
        sys.exit(130)
    _print_endpoints(endpoints, local, operator_env=stack.operator_env() if local else {})
    sys.exit(run_forever(stack))


@cli.command()
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for every decision.")
def demo(timeout: float) -> None:
    """`up --local`, upload the bundled samples, print their decisions, stop, exit 0."""
    from pipeline.demo.run import run_demo

    settings = load_settings(local=True)
    configure_logging(settings)
    _stop_signals_as_interrupt()
    try:
        code = run_demo(settings, dict(os.environ), timeout=timeout)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(celery_args: tuple[str, ...]) -> None:
    """A Celery worker for the detect, tag and report tasks (extra arguments go to `celery worker`)."""
    settings = load_settings()
    if settings.metrics_port:
        from pipeline.monitoring import multiprocess

        multiprocess.prepare()  # before prometheus_client is imported, so pool processes count together
    from pipeline import aws
    from pipeline.detectors.factory import build_detector
    from pipeline.report import migrate

    configure_logging(settings)
    migrate.ensure_current(settings.database_url)
    build_detector(settings, client=aws.client)  # fail now, not on the first task
    from pipeline import ratelimit

    ratelimit.check_reachable(settings)  # the shared Rekognition rate limit's Redis
    resolve_queue(aws.client("sqs"), settings.review_queue, "PIPELINE_REVIEW_QUEUE")
    from pipeline.app import app
    from pipeline.monitoring.server import serve_worker

    serve_worker(settings)  # in the main process, before the pool forks
    queues = f"{settings.detect_queue},{settings.default_queue}"
    quiet = ["--quiet"] if settings.log_format == "json" else []  # no start-up banner among the JSON lines
    app.worker_main([*quiet, "worker", f"--loglevel={settings.log_level}", "-Q", queues, "-E", *celery_args])


@cli.command()
def bridge() -> None:
    """Long-poll the events queue and enqueue a chain per image."""
    from bridge.poller import Bridge
    from pipeline import aws
    from pipeline.app import app
    from pipeline.backlog import Backlog
    from pipeline.events import KeyFilter
    from pipeline.monitoring.liveness import BRIDGE_MAX_AGE_SECONDS, Liveness
    from pipeline.monitoring.server import serve_bridge
    from pipeline.report import migrate
    from pipeline.report.store import ReportStore

    settings = load_settings()
    configure_logging(settings)
    migrate.ensure_current(settings.database_url)
    sqs = aws.client("sqs")
    store = ReportStore.from_url(settings.database_url)
    liveness = Liveness(BRIDGE_MAX_AGE_SECONDS)
    bridge = Bridge(
        sqs=sqs,
        queue_url=resolve_queue(sqs, settings.events_queue, "PIPELINE_EVENTS_QUEUE"),
        dead_letter_url=resolve_queue(sqs, settings.dead_letter_queue, "PIPELINE_DEAD_LETTER_QUEUE"),
        store=store,
        app=app,
        key_filter=KeyFilter.from_settings(settings),
        stale_after=settings.stale_after,
        allowed_buckets=settings.effective_allowed_buckets,
        backlog=Backlog(app, (settings.detect_queue,)),
        high_water=settings.backlog_high_water,
        heartbeat=liveness.beat,
    )
    serve_bridge(settings, liveness, app=app, sqs=aws.snapshot_client("sqs"), store=store)  # scrapes never hang
    bridge.run()


@cli.command()
def beat() -> None:
    """Celery beat: sends the sweeper task every PIPELINE_SWEEP_INTERVAL seconds (run exactly one)."""
    from pathlib import Path

    from pipeline.app import app

    settings = load_settings()
    configure_logging(settings)
    state = Path(settings.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    quiet = ["--quiet"] if settings.log_format == "json" else []  # no start-up banner among the JSON lines
    app.start([*quiet, "beat", f"--loglevel={settings.log_level}", f"--schedule={state / 'celerybeat-schedule'}"])


@cli.command()
def sweep() -> None:
    """Run the sweeper once now: re-enqueue pending rows whose task was lost, print what it found."""
    import json

    from pipeline import sweeper
    from pipeline.app import app
    from pipeline.backlog import room_under
    from pipeline.report import migrate
    from pipeline.report.store import ReportStore

    from pipeline.local.stack import check_broker

    settings = load_settings()
    configure_logging(settings)
    migrate.ensure_current(settings.database_url)
    check_broker(settings.effective_broker_url)  # one line naming PIPELINE_BROKER_URL, exit 2
    room = room_under(app, (settings.detect_queue,), settings.backlog_high_water)
    report = sweeper.sweep(ReportStore.from_url(settings.database_url), app, stale_after=settings.stale_after,
                           batch=settings.sweep_batch, room=room)
    click.echo(json.dumps(report.to_dict(), sort_keys=True))
    if report.broker_error:
        sys.exit(1)  # the broker refused part of the work: it stays pending for the next run


@cli.command()
def flower() -> None:
    """Flower, the Celery monitor, for the pipeline's broker (basic auth: PIPELINE_FLOWER_BASIC_AUTH)."""
    from pipeline.monitoring.flower import flower_argv

    settings = load_settings()
    configure_logging(settings)
    argv = flower_argv(settings)  # refuses to start without credentials or the explicit opt-out
    if settings.flower_unauthenticated and not settings.flower_credentials:
        os.environ["FLOWER_UNAUTHENTICATED_API"] = "true"  # Flower's own switch: its /api is refused otherwise
    from pipeline.app import app

    app.start(argv)


@cli.command(name="migrate")
def migrate_command() -> None:
    """Create or upgrade the report database schema (Alembic) to the latest version."""
    from pipeline.report import migrate

    settings = load_settings()
    migrate.upgrade(settings.database_url)
    click.echo(f"report database at revision {migrate.current_revision(settings.database_url)}")


@cli.group()
def hashlist() -> None:
    """Manage the known-bad hash list (PIPELINE_HASHLIST_PATH)."""


@hashlist.command(name="add")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--file", "list_path", type=click.Path(dir_okay=False), help="Hash list to write [PIPELINE_HASHLIST_PATH].")
@click.option("--name", default="Known Bad Content", show_default=True, help="Label Name the entries report.")
@click.option("--parent", default="Explicit", show_default=True, help="Label ParentName (a taxonomy category).")
@click.option("--level", default=2, show_default=True, type=click.IntRange(1, 3), help="Label TaxonomyLevel.")
@click.option("--note", default="", help="Free text kept with each entry.")
@click.option("--algorithm", default="phash", show_default=True, help="Hash algorithm: phash, or pdq (the `pdq` extra).")
def hashlist_add(images: tuple[str, ...], list_path: str | None, name: str, parent: str, level: int, note: str,
                 algorithm: str) -> None:
    """Add the perceptual hash of each IMAGE to the hash list (created if missing)."""
    from pathlib import Path

    from pipeline import taxonomy
    from pipeline.detectors.hashlist import add_entry, get_algorithm

    try:
        get_algorithm(algorithm)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc), param_hint="--algorithm") from None

    if parent not in taxonomy.PARENTS:  # a misspelt parent would escape PIPELINE_BLOCK_CATEGORIES
        raise click.BadParameter(f"{parent!r} is not in the moderation taxonomy; top-level categories: "
                                 f"{', '.join(taxonomy.TOP_LEVEL)}", param_hint="--parent")
    target = list_path or load_settings().hashlist_path
    if not target:
        raise click.UsageError("give --file or set PIPELINE_HASHLIST_PATH")
    label = {"Name": name, "ParentName": parent, "TaxonomyLevel": level}
    for image in images:
        try:
            data = Path(image).read_bytes()
            if algorithm == "pdq":  # refuse a hash that would match unreliably (ThreatExchange's quality rule)
                from pipeline.detectors.pdq import require_quality
                from pipeline.images import decode_image

                require_quality(decode_image(data))
            entry = add_entry(target, data, label, note or Path(image).name, algorithm=algorithm)
        except PipelineError as exc:
            raise click.ClickException(f"{image}: {exc}") from None
        click.echo(f"{entry.algorithm} {entry.hash}  {image}  -> {target}")


def _print_endpoints(endpoints: dict[str, str], local: bool, *, operator_env: dict[str, str]) -> None:
    click.echo("moderation pipeline is up" + (" (local)" if local else "") + "; Ctrl-C stops it")
    for name, where in endpoints.items():
        click.echo(f"  {name:<13} {where}")
    if local and "s3_sqs" in endpoints:
        url = endpoints["s3_sqs"]
        click.echo("try it with the AWS CLI (the moto server's credentials):")
        click.echo("  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
        click.echo(f"  aws --endpoint-url {url} s3 cp image.jpg {endpoints.get('bucket', '')}image.jpg")
        bucket = endpoints.get("bucket", "s3://x/").removeprefix("s3://").split("/", 1)
        click.echo(f"  aws --endpoint-url {url} s3api get-object-tagging --bucket {bucket[0]} --key {bucket[1]}image.jpg")
        click.echo("operator commands (pipeline status, sweep, requeue, ...) from another shell need this stack's settings:")
        click.echo("  export " + " ".join(f"{name}={shlex.quote(value)}" for name, value in operator_env.items()))


# -- operator commands, one module each in pipeline.commands ---------------------------------
# Each module defines one click command (or group); register it here with one line.
from pipeline.commands import backfill, report, requeue, review, setup, status  # noqa: E402

cli.add_command(setup.setup)
cli.add_command(backfill.backfill)
cli.add_command(report.report)
cli.add_command(status.status)
cli.add_command(review.review)
cli.add_command(requeue.requeue)
