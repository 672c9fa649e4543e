"""The SQS part of the snapshot on moto: each queue read on its own, and URLs looked up once."""

from __future__ import annotations

import urllib.request
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import provision
from pipeline.app import create_app
from pipeline.monitoring.collector import SnapshotCollector
from pipeline.monitoring.server import serve
from pipeline.monitoring.snapshot import QueueUrls, shared_limiter, sqs_queues
from pipeline.report.store import ReportStore
from pipeline.settings import Settings
from tests.conftest import queue_name

#: Only a guard against a scrape that hangs; a bounded scrape answers within seconds.
SCRAPE_GUARD_SECONDS = 60


def settings_for(queues: provision.Queues, **names: str) -> Settings:
    return Settings().replace(events_queue=queue_name(queues.events_url),
                              dead_letter_queue=queue_name(queues.dead_letter_url),
                              review_queue=queue_name(queues.review_url)).replace(**names)


class CountingLookups:
    """The moto client, counting GetQueueUrl calls."""

    def __init__(self, sqs: Any) -> None:
        self._sqs, self.lookups = sqs, 0

    def get_queue_url(self, **kwargs: Any) -> Any:
        self.lookups += 1
        return self._sqs.get_queue_url(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def test_a_queue_that_cannot_be_read_leaves_the_others_their_depths(sqs, queues):
    # Given: 2 messages in the events queue, 1 in the review queue, and a dead-letter queue that does not exist
    for _ in range(2):
        sqs.send_message(QueueUrl=queues.events_url, MessageBody="{}")
    sqs.send_message(QueueUrl=queues.review_url, MessageBody="{}")
    settings = settings_for(queues, dead_letter_queue=f"{queue_name(queues.dead_letter_url)}-missing")
    # When
    reading = sqs_queues(QueueUrls(sqs), settings)
    # Then: the part is there; only that queue is unavailable, with the reason
    assert reading.available
    by_role = {q.role: q for q in reading.value}
    assert {role: q.depth for role, q in by_role.items()} == {"events": 2, "dead_letter": None, "review": 1}
    assert not by_role["dead_letter"].available and "NonExistentQueue" in by_role["dead_letter"].error
    assert by_role["events"].available and by_role["review"].available


def test_the_bridge_gauges_keep_the_readable_queues_and_mark_the_part_down(sqs, queues, pipeline_app, report_db_url):
    # Given
    sqs.send_message(QueueUrl=queues.review_url, MessageBody="{}")
    settings = settings_for(queues, dead_letter_queue=f"{queue_name(queues.dead_letter_url)}-missing")
    store = ReportStore.from_url(report_db_url)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(settings, app=pipeline_app, sqs=sqs, store=store, limiter=None))
    try:
        # When
        samples = {(s.name, tuple(s.labels.items())): s.value
                   for family in text_string_to_metric_families(generate_latest(registry).decode())
                   for s in family.samples}
    finally:
        store.dispose()
    # Then
    depths = {labels[0][1]: value for (name, labels), value in samples.items() if name == "pipeline_queue_depth"}
    assert {role: depths.get(role) for role in ("events", "dead_letter", "review")} == {
        "events": 0, "dead_letter": None, "review": 1}
    assert samples[("pipeline_status_up", (("part", "sqs_queues"),))] == 0.0


def test_queue_urls_are_looked_up_once_per_process_and_a_failed_lookup_again(sqs, queues):
    # Given
    counting = CountingLookups(sqs)
    urls = QueueUrls(counting)
    missing = f"{queue_name(queues.review_url)}-later"
    settings = settings_for(queues, review_queue=missing)
    # When: three scrapes, the review queue created after the first
    sqs_queues(urls, settings)
    assert counting.lookups == 3
    created = sqs.create_queue(QueueName=missing)["QueueUrl"]
    try:
        second = sqs_queues(urls, settings)
        sqs_queues(urls, settings)
    finally:
        sqs.delete_queue(QueueUrl=created)
    # Then: only the failed lookup was tried again, and it found the new queue
    assert counting.lookups == 4
    assert {q.role: q.depth for q in second.value} == {"events": 0, "dead_letter": 0, "review": 0}


def test_no_readable_queue_makes_the_whole_part_unavailable(sqs, queues):
    settings = settings_for(queues, events_queue="nope-1", dead_letter_queue="nope-2", review_queue="nope-3")
    reading = sqs_queues(QueueUrls(sqs), settings)
    assert not reading.available and "NonExistentQueue" in reading.error


def scrape(settings: Settings, *, app: Any, sqs: Any, store: ReportStore) -> dict[tuple[str, tuple], float]:
    """One scrape over HTTP of the bridge's endpoint with the snapshot collector; the urlopen timeout only guards a hang."""
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(settings, app=app, sqs=sqs, store=store, limiter=shared_limiter(settings)))
    endpoint = serve("127.0.0.1", 0, registry, lambda: True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoint.port}/metrics", timeout=SCRAPE_GUARD_SECONDS) as answer:
            text = answer.read().decode()
    finally:
        endpoint.close()
    return {(s.name, tuple(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_broker_that_does_not_answer_makes_the_scrape_say_down(sqs, queues, stopped_redis, report_db_url):
    # Given: the broker and the limiter's Redis accept connections and never answer
    settings = settings_for(queues, broker_url=stopped_redis)
    app, store = create_app(settings), ReportStore.from_url(report_db_url)
    try:
        # When
        samples = scrape(settings, app=app, sqs=sqs, store=store)
    finally:
        store.dispose()
        app.close()
    # Then: the scrape answers; the broker and limiter parts are down, the others up
    up = {labels[0][1]: value for (name, labels), value in samples.items() if name == "pipeline_status_up"}
    assert up == {"broker_queues": 0.0, "sqs_queues": 1.0, "pending": 1.0, "limiter": 0.0}
    assert ("pipeline_queue_depth", (("queue", "detect"),)) not in samples
    assert samples[("pipeline_queue_depth", (("queue", "events"),))] == 0.0


def test_without_rekognition_the_bridge_exports_no_limiter_gauges(sqs, queues, pipeline_app, report_db_url, tmp_path):
    # Given: a hash-list-only pipeline (no Rekognition, so no shared limiter)
    hashlist = tmp_path / "hashes.txt"
    hashlist.write_text("")
    settings = settings_for(queues, detectors=("hashlist",), hashlist_path=str(hashlist))
    store = ReportStore.from_url(report_db_url)
    try:
        # When
        samples = scrape(settings, app=pipeline_app, sqs=sqs, store=store)
    finally:
        store.dispose()
    # Then
    names = {name for name, _ in samples}
    assert not names & {"pipeline_ratelimit_rate", "pipeline_ratelimit_configured_rate"}
    assert "limiter" not in {labels[0][1] for name, labels in samples if name == "pipeline_status_up"}
    assert "pipeline_pending_rows" in names
