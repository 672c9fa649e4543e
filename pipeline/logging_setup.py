"""Logging for every ``pipeline`` process: one format, the level from PIPELINE_LOG_LEVEL.

``PIPELINE_LOG_FORMAT=json`` writes one JSON object per line (python-json-logger): ``time``,
``level``, ``process``, ``logger``, ``message``, plus every ``extra`` field a call passes, so a
decision line carries ``bucket``, ``key``, ``version_id``, ``outcome`` and ``work_id`` as keys.
The Celery worker logs through the same root handler: the app does not hijack the root logger,
and a ``setup_logging`` receiver tells Celery that logging is configured already.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from pythonjsonlogger.json import JsonFormatter

from pipeline.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
#: The LogRecord attributes every JSON line carries, and the keys they are written under.
JSON_FIELDS = "%(asctime)s %(levelname)s %(processName)s %(name)s %(message)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "processName": "process", "name": "logger"}
#: Libraries whose wire-level logs stay at WARNING or above.
NOISY_LOGGERS = ("botocore", "boto3", "urllib3", "s3transfer", "alembic")


def configure(settings: Settings) -> None:
    """Configure the root logger once; boto's wire-level loggers stay quiet."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(settings.log_format))
    logging.basicConfig(level=settings.log_level, handlers=[handler])
    logging.captureWarnings(True)  # warnings (Celery's, at start-up) become log lines in the same format
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    signals.setup_logging.connect(_configured_already, weak=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for PIPELINE_LOG_FORMAT: ``text`` or ``json``."""
    if log_format == "json":
        return JsonFormatter(JSON_FIELDS, rename_fields=JSON_RENAMES, json_ensure_ascii=False)
    return logging.Formatter(FORMAT)


def _configured_already(**_: Any) -> None:
    """A receiver of Celery's ``setup_logging``: its presence keeps Celery off the loggers set up here."""
