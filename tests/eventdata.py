"""Load the real-shaped payloads in ``tests/events/`` (written from AWS's documented formats)."""

from __future__ import annotations

from pathlib import Path

EVENTS_DIR = Path(__file__).parent / "events"


def load_event(name: str) -> str:
    """The raw body text of ``tests/events/<name>.json``, exactly as an SQS message would carry it."""
    path = EVENTS_DIR / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no event fixture {name!r} in {EVENTS_DIR}")
    return path.read_text(encoding="utf-8")
