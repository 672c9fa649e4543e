"""prometheus_client's multiprocess mode for a prefork Celery worker.

Every pool process writes its counters and histograms to memory-mapped files in one directory,
and the worker's main process adds them up when scraped. prometheus_client picks its storage
when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``: :func:`prepare` sets that
variable (a fresh directory per worker start, so counts never carry over from an earlier run)
and must run before anything imports prometheus_client. It writes the variable; it never reads it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

#: prometheus_client's own variable naming the directory of the per-process files.
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

#: The directory :func:`prepare` made in this worker (pool processes inherit it); None elsewhere.
directory: Path | None = None


def prepare() -> Path:
    """Create a fresh directory for this worker's metric files and point prometheus_client at it.

    Removed again when the worker's main process exits. Raises RuntimeError when prometheus_client
    was imported already (its values would silently stay per process).
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the multiprocess directory was set")
    global directory
    path = directory = Path(tempfile.mkdtemp(prefix="pipeline-metrics-"))
    os.environ[MULTIPROC_DIR_VARIABLE] = str(path)
    owner = os.getpid()
    atexit.register(_remove_if_owner, path, owner)
    return path


def mark_process_dead(**_: Any) -> None:
    """Celery's ``worker_process_shutdown`` receiver: drop this pool process's live-gauge files."""
    from prometheus_client import multiprocess

    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), str(directory))


def _remove_if_owner(path: Path, owner: int) -> None:
    """atexit also runs in forked children that exit normally: only the creator removes the directory."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)
