"""Pure: the command line's filters -> a :class:`~pipeline.report.store.RowSelection`. No I/O.

Times are UTC. ``--since``/``--until`` take an ISO-8601 date (``2024-05-14``: midnight UTC), a
date and time (``2024-05-14T09:30``, ``2024-05-14 09:30:00+02:00``; without an offset it is
UTC), or an age relative to now: a number and one of ``s m h d w`` (``90m``, ``2h``, ``7d``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from pipeline.report.schema import as_utc
from pipeline.report.store import RowSelection
from pipeline.requeue.envelope import REQUEUEABLE

#: Units of a relative time, in seconds.
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RELATIVE = re.compile(r"(\d+)\s*([smhdw])")


def parse_when(text: str, now: datetime) -> datetime:
    """The aware UTC datetime ``text`` names (see the module docstring); ValueError otherwise."""
    value = text.strip()
    relative = _RELATIVE.fullmatch(value.lower())
    if relative:
        try:
            return as_utc(now) - timedelta(seconds=int(relative.group(1)) * _UNITS[relative.group(2)])
        except OverflowError:  # an age reaching before year 1
            raise ValueError(f"{text!r} reaches back further than any date") from None
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO-8601 date/time (2024-05-14, 2024-05-14T09:30Z) nor an age like 2h or 7d"
        ) from None


def build_selection(
    *,
    outcomes: Sequence[str],
    error_codes: Sequence[str] = (),
    prefix: str | None = None,
    bucket: str | None = None,
    since: str | None = None,
    until: str | None = None,
    now: datetime | None = None,
) -> RowSelection:
    """The rows a requeue reads. ``until`` defaults to ``now``: rows that fail again while the
    command runs are not picked up a second time. ValueError names a bad filter."""
    now = now or datetime.now(timezone.utc)
    wrong = sorted(set(outcomes) - set(REQUEUEABLE))
    if wrong or not outcomes:
        raise ValueError(f"outcome must be {' or '.join(REQUEUEABLE)}, not {', '.join(wrong) or 'nothing'}")
    start = parse_when(since, now) if since else None
    end = parse_when(until, now) if until else now
    if start is not None and start >= end:
        raise ValueError(f"--since ({start.isoformat()}) must be before --until ({end.isoformat()})")
    ordered = tuple(name for name in REQUEUEABLE if name in outcomes)
    return RowSelection(outcomes=ordered, bucket=bucket or None, prefix=prefix or None,
                        error_codes=tuple(dict.fromkeys(error_codes)), since=start, until=end)


__all__ = ["build_selection", "parse_when"]
