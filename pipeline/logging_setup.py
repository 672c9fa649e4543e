"""Logging for every ``pipeline`` process: one format, the level from PIPELINE_LOG_LEVEL."""

from __future__ import annotations

import logging

from pipeline.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def configure(settings: Settings) -> None:
    """Configure the root logger once; boto's wire-level loggers stay quiet."""
    logging.basicConfig(level=settings.log_level, format=FORMAT)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
