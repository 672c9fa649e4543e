"""Messages the events queue still holds when a backfill starts, and the warning they call for.

The report store learns of a backfilled object only when the bridge hands its message off. A run
started while an earlier run's messages still wait in the queue cannot tell them from objects
never sent, so it sends them again; the bridge drops the repeats (each row keeps attempts=1), but
new uploads wait behind them. Nothing cheap can tell which messages are waiting (SQS has no peek),
so the run only warns.
"""

from __future__ import annotations


def queued_warning(count: int) -> str | None:
    """The warning ``pipeline backfill`` prints when the events queue is not empty; None when it is."""
    if count == 0:
        return None
    return (f"warning: the events queue holds about {count} messages; objects a previous backfill queued that the "
            "bridge has not handed off yet will be sent again (harmless: the bridge drops duplicates, but new "
            "uploads wait behind them). To avoid it, wait until `pipeline status` shows the events queue empty.")


__all__ = ["queued_warning"]
