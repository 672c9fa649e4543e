"""KEDA's redis trigger reads the list Celery really keeps the waiting detections in (the test's own Redis)."""

from __future__ import annotations

from typing import Any

from pipeline.app import DETECT_TASK, REPORT_TASK, TAG_TASK
from pipeline.backlog import Backlog
from tests.deployment import kubernetes_objects


def test_kedas_list_holds_exactly_the_waiting_detections(redis_client: Any, pipeline_app: Any) -> None:
    (trigger,) = kubernetes_objects()["ScaledObject", "pipeline-worker"]["spec"]["triggers"]
    metadata = trigger["metadata"]
    assert redis_client.connection_pool.connection_kwargs["db"] == int(metadata["databaseIndex"])
    # Given: detections routed as the bridge sends them, and tag and report tasks for the other queue
    for _ in range(5):
        pipeline_app.send_task(DETECT_TASK, args=({},))
    pipeline_app.send_task(TAG_TASK, args=({},))
    pipeline_app.send_task(REPORT_TASK, args=({},))
    # Then: the list KEDA reads counts the detections only, as the bridge's backpressure does
    assert redis_client.llen(metadata["listName"]) == 5
    backlog = Backlog(pipeline_app, (metadata["listName"],))
    try:
        assert backlog.depth() == 5
    finally:
        backlog.close()
