"""``pipeline requeue``: send failed images through the chain again, and dead letters back.

- :mod:`~pipeline.requeue.envelope`  pure: the requeue message the bridge understands
- :mod:`~pipeline.requeue.selection` pure: the command line's filters -> a RowSelection
- :mod:`~pipeline.requeue.sending`   SendMessageBatch in batches, retrying failed entries
- :mod:`~pipeline.requeue.rows`      selected report rows -> requeue messages on the events queue
- :mod:`~pipeline.requeue.dlq`       dead-letter queue -> events queue, deleting only what was sent

Only the envelope is imported here: :mod:`pipeline.events` reads it and must stay free of I/O.
"""

from pipeline.requeue.envelope import RequeueEvent, build_message, parse_message

__all__ = ["RequeueEvent", "build_message", "parse_message"]
