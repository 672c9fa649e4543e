"""Build the Celery app from Settings.

``pipeline.app:app`` is the app every ``pipeline`` process (worker, bridge, Flower) uses; it
reads Settings from the environment when first imported, so a bad value stops start-up.
"""

from __future__ import annotations

from celery import Celery

from pipeline.settings import Settings

DETECT_TASK = "pipeline.detect"
TAG_TASK = "pipeline.tag"
REPORT_TASK = "pipeline.report"
SWEEP_TASK = "pipeline.sweep"


def create_app(settings: Settings) -> Celery:
    """A Celery app configured for the pipeline: JSON only, late acks, detection on its own queue."""
    app = Celery("pipeline", broker=settings.effective_broker_url, include=["pipeline.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        # A task is acknowledged only after it ran, and given back if its worker process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=settings.default_queue,
        task_routes={
            DETECT_TASK: {"queue": settings.detect_queue},
            TAG_TASK: {"queue": settings.default_queue},
            REPORT_TASK: {"queue": settings.default_queue},
            SWEEP_TASK: {"queue": settings.default_queue},
        },
        # `pipeline beat` sends the sweeper every PIPELINE_SWEEP_INTERVAL; a sweep nobody ran
        # before the next one is due is dropped rather than piling up while workers are down.
        beat_schedule={
            "sweep-stale-pending": {
                "task": SWEEP_TASK,
                "schedule": float(settings.sweep_interval),
                "options": {"expires": float(settings.sweep_interval)},
            },
        },
        # Redis transport: an unacknowledged task is delivered again after this many seconds.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=False,
    )
    app.pipeline_settings = settings  # type: ignore[attr-defined]
    return app


app = create_app(Settings.from_env())
