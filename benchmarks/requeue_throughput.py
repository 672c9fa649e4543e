"""How fast `pipeline requeue` reads rows and puts requeue messages on the events queue.

Starts a moto server (S3/SQS) on loopback and a SQLite report store in a temporary directory,
fills the store with failed rows, then measures:

1. a dry run over every row (count + keyset pages + key filter): rows per second;
2. building and batching every message against an SQS that accepts at once: the command's own cost;
3. real sends with SendMessageBatch to a moto queue: messages per second and calls per message.
   moto's SQS slows as a queue deepens, so each round sends ``--round`` messages to a fresh queue
   (moto allows one PurgeQueue a minute); the figure is for moto on this machine, not for AWS.

    .venv/bin/python benchmarks/requeue_throughput.py --rows 20000 --round 500 --rounds 4
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3

from pipeline.events import KeyFilter
from pipeline.local.processes import Child, free_port, moto_server_argv, wait_for_port
from pipeline.report import migrate
from pipeline.report.schema import images
from pipeline.report.store import ReportStore, RowSelection
from pipeline.requeue.rows import requeue_rows

#: Rows inserted per INSERT statement while filling the store.
INSERT_CHUNK = 1000


class CountingSQS:
    """Counts SendMessageBatch calls made through a real client, and the time spent waiting on them."""

    def __init__(self, sqs: Any) -> None:
        self._sqs, self.batch_calls, self.waiting = sqs, 0, 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.batch_calls += 1
        started = time.perf_counter()
        try:
            return self._sqs.send_message_batch(**kwargs)
        finally:
            self.waiting += time.perf_counter() - started


class AcceptingSQS:
    """Answers every SendMessageBatch with success at once: isolates the command's own cost."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries], "Failed": []}


def fill(store: ReportStore, count: int) -> None:
    """``count`` failed rows, inserted in bulk."""
    now = datetime.now(timezone.utc)
    for start in range(0, count, INSERT_CHUNK):
        rows = [{"work_id": f"{n:064x}", "bucket": "bench", "key": f"content/images/{n:07}.jpg", "version_id": f"v{n}",
                 "etag": "d41d8cd98f00b204e9800998ecf8427e", "outcome": "failed", "labels": [], "attempts": 0,
                 "error_code": "InternalServerError", "received_at": now, "updated_at": now}
                for n in range(start, min(count, start + INSERT_CHUNK))]
        with store.engine.begin() as conn:
            conn.execute(images.insert(), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--round", type=int, default=500, help="messages sent per round (queue purged between)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        moto = Child("moto", moto_server_argv(port), dict(os.environ), Path(tmp) / "moto.log").start()
        try:
            wait_for_port(port, proc=moto.proc)
            run(args, Path(tmp), f"http://127.0.0.1:{port}")
        finally:
            moto.stop()


def run(args: argparse.Namespace, tmp: Path, endpoint: str) -> None:
    url = f"sqlite:///{tmp / 'report.db'}"
    migrate.upgrade(url)
    store = ReportStore.from_url(url)
    fill(store, args.rows)
    selection = RowSelection(until=datetime.now(timezone.utc))

    started = time.perf_counter()
    dry = requeue_rows(store, None, "", selection, key_filter=KeyFilter(), dry_run=True)
    elapsed = time.perf_counter() - started
    print(f"dry run: {dry.selected} rows in {elapsed:.2f} s = {dry.selected / elapsed:,.0f} rows/s (SQLite, pages of 500)")

    started = time.perf_counter()
    local = requeue_rows(store, AcceptingSQS(), "q", selection, key_filter=KeyFilter())
    elapsed = time.perf_counter() - started
    print(f"build + batch, SQS answering at once: {local.sent} messages in {elapsed:.2f} s = "
          f"{local.sent / elapsed:,.0f} messages/s (the command's own cost)")

    sqs = CountingSQS(boto3.client("sqs", endpoint_url=endpoint))
    sent, elapsed = 0, 0.0
    for number in range(args.rounds):
        queue_url = sqs.create_queue(QueueName=f"bench-events-{number}")["QueueUrl"]  # a fresh, empty queue
        started = time.perf_counter()
        report = requeue_rows(store, sqs, queue_url, selection, key_filter=KeyFilter(), limit=args.round)
        elapsed += time.perf_counter() - started
        sent += report.sent
        sqs.delete_queue(QueueUrl=queue_url)
    print(f"send: {sent} messages in {elapsed:.2f} s = {sent / elapsed:,.0f} messages/s to moto, "
          f"{sqs.batch_calls} SendMessageBatch calls ({sent / sqs.batch_calls:.1f} messages a call, "
          f"{sqs.waiting / sqs.batch_calls * 1000:.0f} ms a call waiting on moto)")
    store.dispose()


if __name__ == "__main__":
    main()
