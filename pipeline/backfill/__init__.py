"""``pipeline backfill s3://bucket/prefix``: judge objects that were uploaded before the pipeline ran.

- :mod:`~pipeline.backfill.listing`    ListObjectsV2 (ListObjectVersions in a versioned bucket), paginated
- :mod:`~pipeline.backfill.message`    pure: a listed object -> the S3-event-shaped body the bridge reads
- :mod:`~pipeline.backfill.checkpoint` the last key handled, per bucket and prefix, for a resume
- :mod:`~pipeline.backfill.run`        list, filter, skip what the report store knows, send, checkpoint
- :mod:`~pipeline.backfill.queued`     the events queue's depth at start: an earlier run's messages are sent again

Each object is sent as an S3 event notification record (``eventName`` ``ObjectCreated:Backfill``)
rather than a requeue envelope: the requeue path needs an existing report row, while a backfilled
object must be judged exactly like an upload (key filter, allowed buckets, pending row, chain).
A versioned object's record carries its version id, so its ``work_id`` is the one a real event
for that version has: a later real event (or a second backfill) is a duplicate. An unversioned
object has no sequencer outside a real event; its record carries LastModified as the event time,
which is stable, so a second backfill is a duplicate too (see the README's known limits).

No backpressure here: the events queue is the buffer, and the bridge already stops receiving
while PIPELINE_BACKLOG_HIGH_WATER tasks wait in the broker.
"""
