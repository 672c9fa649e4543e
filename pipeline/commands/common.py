"""What every ``pipeline`` sub-command shares: settings, logging, queue look-up, progress bars.

Sub-commands live in ``pipeline.cli`` (the long-running processes) and in modules of this package
(one per operator command), registered on the ``pipeline`` group at the bottom of ``pipeline.cli``.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from pipeline.errors import ConfigurationError
from pipeline.settings import Settings


def load_settings(**kwargs: Any) -> Settings:
    """Settings from the environment; a ConfigurationError reaches ``main``, which prints it (exit 2)."""
    return Settings.from_env(**kwargs)


@contextmanager
def progress(length: int | None, label: str) -> Iterator[Callable[[int], None]]:
    """``advance(n)`` of click's progress bar on a terminal; silent when stderr is a pipe or a log.

    ``length`` None: the total is unknown (a listing still running); the bar counts and pulses.
    """
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    # An iterable without a length hint is how click is told the total is unknown.
    items = itertools.repeat(None) if length is None else None
    with click.progressbar(items, length=length, label=label, file=sys.stderr, show_pos=length is None) as bar:
        yield bar.update


def resolve_queue(sqs: Any, name_or_url: str, variable: str) -> str:
    """The queue's URL, checked at start-up so a wrong name fails now, naming its variable."""
    from botocore.exceptions import BotoCoreError, ClientError

    from pipeline import aws

    try:
        url = aws.queue_url(sqs, name_or_url)
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        raise ConfigurationError(f"{variable}={name_or_url}: {code or 'cannot use this queue'}") from None
    except BotoCoreError as exc:
        raise ConfigurationError(f"{variable}={name_or_url}: cannot reach SQS: {exc}") from None


def configure_logging(settings: Settings) -> None:
    """The one log format of every ``pipeline`` process (see ``pipeline.logging_setup``)."""
    from pipeline.logging_setup import configure

    configure(settings)
