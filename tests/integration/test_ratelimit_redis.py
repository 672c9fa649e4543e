"""The shared rate limiter against a real Redis of the test's own (``redis_url``), and the Rekognition
detector reporting throttles to it through the stand-in (real JSON protocol, real boto3 client).

Most tests replace the limiter's ``sleep`` with a recorder: the script then hands out slots back to
back, so their spacing is exact and nothing depends on how fast this machine runs. The
multi-process test sleeps for real, as workers do. No test asserts how long anything took.
"""

from __future__ import annotations

import bisect
import io
import multiprocessing
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from PIL import Image

from pipeline import aws
from pipeline.detectors.base import ImageRef
from pipeline.detectors.rekognition import RekognitionDetector
from pipeline.errors import RateLimiterUnavailable, RateLimitWaitExceeded, RetryableError, ThrottledError
from pipeline.local.processes import free_port
from pipeline.ratelimit import RateLimiter, redis_client
from tests.conftest import aws_client
from tests.standins.rekognition import RekognitionStandIn

#: Slots are stored and returned with microsecond precision (Redis TIME's granularity), so two
#: slots 1/rate apart may differ from it by a few microseconds of rounding.
ROUNDING = 5e-6
#: A recovery so slow that the rate cannot visibly climb while a test runs.
NO_RECOVERY = 1e9


@pytest.fixture
def client(redis_client: redis.Redis) -> redis.Redis:
    """The session's Redis, emptied for this test (it is the test's own server, never 127.0.0.1:6379)."""
    return redis_client


class FakeTime:
    """A clock that moves only when the limiter sleeps, recording each sleep.

    ``oversleep``: extra seconds the next sleeps take, as a starved process wakes late.
    """

    def __init__(self, oversleep: list[float] | None = None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._oversleep = list(oversleep or [])

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds + (self._oversleep.pop(0) if self._oversleep else 0.0)


def limiter(client: redis.Redis, *, name: str | None = None, fake: FakeTime | None = None, **kwargs: Any) -> RateLimiter:
    """A limiter with a name of this test's own that sleeps on ``fake`` (so never for real)."""
    fake = fake or FakeTime()
    return RateLimiter(client, name=name or uuid.uuid4().hex, sleep=fake.sleep, clock=fake.clock,
                       **{"rate": 50, **kwargs})


def gaps(slots: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(slots, slots[1:])]


# -- spacing -----------------------------------------------------------------------------------


def test_burst_zero_spaces_every_slot_one_interval_apart(client):
    # Given
    fake = FakeTime()
    shared = limiter(client, rate=50, burst=0, fake=fake)
    # When
    grants = [shared.acquire() for _ in range(20)]
    # Then: the first goes at once, every later one exactly 1/50 s after the one before
    assert grants[0].wait == 0.0
    assert gaps([g.slot for g in grants]) == pytest.approx([0.02] * 19, abs=ROUNDING)
    # and acquire slept exactly what the script said, and reports that as the time waited
    assert fake.sleeps == [g.wait for g in grants[1:]]
    assert [g.waited for g in grants] == pytest.approx([g.wait for g in grants])
    assert all(g.rate == 50.0 for g in grants)


def test_a_burst_lets_that_many_extra_calls_go_at_once_then_spaces_the_rest(client):
    # Given: 10/s with a burst of 4
    shared = limiter(client, rate=10, burst=4)
    # When
    grants = [shared.acquire() for _ in range(9)]
    # Then: 1 + 4 calls without waiting, then one every 0.1 s after the first
    assert [g.wait for g in grants[:5]] == [0.0] * 5
    assert all(g.wait > 0 for g in grants[5:])
    first = grants[0].slot
    assert [g.slot - first for g in grants[5:]] == pytest.approx([0.1, 0.2, 0.3, 0.4], abs=ROUNDING)


def test_two_limiter_instances_on_one_redis_share_the_slots(client):
    # Given: two workers' limiters with the same name
    name = uuid.uuid4().hex
    first, second = limiter(client, name=name, rate=20), limiter(client, name=name, rate=20)
    # When: they take turns
    slots = [(first if i % 2 else second).acquire().slot for i in range(10)]
    # Then: one sequence of slots 1/20 s apart, not two interleaved ones
    assert gaps(slots) == pytest.approx([0.05] * 9, abs=ROUNDING)


def test_another_name_is_another_limit(client):
    a, b = limiter(client, rate=1), limiter(client, rate=1)
    assert (a.acquire().wait, b.acquire().wait) == (0.0, 0.0)
    assert client.exists(a.key) and client.exists(b.key) and a.key != b.key


def test_idle_state_expires(client):
    shared = limiter(client, rate=50, max_wait=5, recovery_seconds=30)
    shared.acquire()
    ttl_ms = client.pttl(shared.key)
    # recovery + longest wait + margin, so nothing still needed can expire
    assert 90_000 < ttl_ms <= 95_000


def test_a_caller_that_wakes_too_late_for_its_slot_takes_a_fresh_one(client):
    # Given: 10/s, and a worker whose first sleep overruns by a second (a paused process)
    fake = FakeTime(oversleep=[1.0])
    shared = limiter(client, rate=10, fake=fake)
    first = shared.acquire()
    # When
    second = shared.acquire()
    # Then: it gave its stale slot up and took the next one, instead of sending late into it
    assert second.retakes == 1 and len(fake.sleeps) == 2
    assert second.slot - first.slot == pytest.approx(0.2, abs=ROUNDING)
    assert second.waited == pytest.approx(sum(fake.sleeps) + 1.0)


def test_a_caller_that_keeps_waking_late_goes_after_a_few_fresh_slots(client):
    fake = FakeTime(oversleep=[0.5] * 10)
    shared = limiter(client, rate=10, fake=fake)
    shared.acquire()
    grant = shared.acquire()
    assert grant.retakes == 3 and len(fake.sleeps) == 4


def test_fresh_slots_stay_within_the_same_max_wait(client):
    # Given: two seconds of patience, and a first sleep that overruns by 1.95 s
    fake = FakeTime(oversleep=[1.95])
    shared = limiter(client, rate=10, max_wait=2.0, fake=fake)
    shared.acquire()
    # When / Then: the fresh slot (0.2 s away) no longer fits into what is left of the two seconds
    with pytest.raises(RateLimitWaitExceeded):
        shared.acquire()


# -- several processes --------------------------------------------------------------------------


def take_slots(url: str, name: str, rate: float, count: int, start: Any, out: Any) -> None:
    """In a child process: wait for the others, then take ``count`` slots, sleeping as a worker does."""
    shared = RateLimiter(redis.Redis.from_url(url), rate=rate, name=name)
    start.wait()
    out.put([shared.acquire().slot for _ in range(count)])


def most_in_any_window(slots: list[float], window: float) -> int:
    """The most slots in any half-open window [t, t + window) (the busiest one starts at a slot)."""
    ordered = sorted(slots)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def test_processes_sharing_one_limiter_never_exceed_the_rate_in_any_second(redis_url, redis_client):
    # Given: four OS processes, each with its own limiter and connection, started together
    rate, per_process, processes = 40, 25, 4
    name = uuid.uuid4().hex
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(processes), context.Queue()
    children = [context.Process(target=take_slots, args=(redis_url, name, rate, per_process, start, out))
                for _ in range(processes)]
    for child in children:
        child.start()
    # When
    slots = [slot for _ in children for slot in out.get(timeout=60)]
    for child in children:
        child.join(timeout=30)
    # Then: every slot is distinct and at least 1/rate after the previous one (to the microsecond)...
    assert len(set(slots)) == processes * per_process
    assert min(gaps(sorted(slots))) >= 1 / rate - ROUNDING
    # ...so no sliding second holds more than `rate` of them. The window is shortened by the
    # slots' microsecond rounding: 41 slots spaced 1/40 s minus 1 us would otherwise fit in 1 s.
    assert most_in_any_window(slots, 1.0 - 100 * ROUNDING) <= rate
    assert all(child.exitcode == 0 for child in children)


# -- adaptive: throttles lower the shared rate, recovery climbs back ------------------------------


def test_throttles_from_two_workers_lower_the_rate_for_every_limiter_on_the_same_redis(client):
    # Given: three workers' limiters sharing a name
    name = uuid.uuid4().hex
    first, second, other = (limiter(client, name=name, rate=50, recovery_seconds=NO_RECOVERY) for _ in range(3))
    # When: one worker is throttled, and another right after it
    assert first.report_throttle() == "noted"
    assert second.report_throttle() == "cut"
    # Then: the third sees half the rate and spaces its slots 1/25 s apart
    assert other.current_rate() == pytest.approx(25.0, abs=1e-3)
    slots = [other.acquire().slot for _ in range(5)]
    assert gaps(slots) == pytest.approx([0.04] * 4, abs=ROUNDING)


def test_a_lone_throttle_is_noted_but_leaves_the_rate_alone(client):
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY)
    assert shared.report_throttle() == "noted"
    assert shared.current_rate() == 50.0
    assert client.hget(shared.key, "lone_at") is not None


def test_throttles_further_apart_than_the_confirm_window_never_cut(client):
    # Given: a confirm window so short that no two reports fall into it
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY, confirm_window=1e-9)
    # When
    statuses = [shared.report_throttle() for _ in range(5)]
    # Then: each is jitter at the edge of the quota, retried by its task, not a reason to slow everyone
    assert statuses == ["noted"] * 5
    assert shared.current_rate() == 50.0


def test_a_dozen_workers_reporting_one_burst_of_throttles_halve_the_rate_once(client):
    # Given: twelve limiter instances, as twelve workers hit by the same overrun
    name = uuid.uuid4().hex
    workers = [limiter(client, name=name, rate=50, recovery_seconds=NO_RECOVERY) for _ in range(12)]
    # When: they all report at once
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda worker: worker.report_throttle(), workers))
    # Then: the first is noted, the second cuts the rate by half, the other ten find it answered
    assert sorted(statuses) == sorted(["noted", "cut"] + ["answered"] * 10)
    assert workers[0].current_rate() == pytest.approx(25.0, abs=1e-3)


def test_after_the_window_new_throttles_cut_again_down_to_the_floor(client):
    # Given: a short decrease window, so that each pair of reports is a new overrun
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY, decrease_window=1e-9)
    # When
    rates = []
    for _ in range(7):
        assert [shared.report_throttle(), shared.report_throttle()] == ["noted", "cut"]
        rates.append(round(shared.current_rate(), 3))
    # Then: halved each time, never below the floor of 5% (2.5/s)
    assert rates == [25.0, 12.5, 6.25, 3.125, 2.5, 2.5, 2.5]
    assert shared.floor == 2.5


def test_within_the_window_later_reports_leave_the_rate_alone(client):
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY, decrease_window=3600)
    assert [shared.report_throttle() for _ in range(4)] == ["noted", "cut", "answered", "answered"]
    assert shared.current_rate() == pytest.approx(25.0, abs=1e-3)


def test_throttles_during_the_climb_hold_the_rate_where_it_is(client):
    # Given: a cut to 25/s, with a window long enough that later throttles only find it answered
    shared = limiter(client, rate=50, recovery_seconds=10, decrease_window=3600)
    assert [shared.report_throttle(), shared.report_throttle()] == ["noted", "cut"]
    cut_at = float(client.hget(shared.key, "cut_at"))
    # When: another throttle comes while the rate climbs
    assert shared.report_throttle() == "answered"
    # Then: the climb starts again from where the rate was, at that throttle
    state = {k.decode(): float(v) for k, v in client.hgetall(shared.key).items()}
    assert state["since"] > cut_at and 25.0 <= state["eff"] < 50.0
    assert state["cut_at"] == cut_at


def test_the_rate_climbs_back_to_the_configured_rate_and_no_further(client):
    # Given: floor-to-full recovery in 0.5 s, and a cut to 25/s
    shared = limiter(client, rate=50, recovery_seconds=0.5)
    assert [shared.report_throttle(), shared.report_throttle()] == ["noted", "cut"]
    # When: the rate is sampled while slots are taken, and again after the recovery time
    climbing = [shared.acquire().rate for _ in range(5)]
    time.sleep(0.6)  # past the recovery time (a wait, not a measurement)
    recovered = shared.current_rate()
    # Then: it only goes up, from at least the cut value, and ends exactly at the configured rate
    assert climbing == sorted(climbing) and climbing[0] >= 25.0
    assert recovered == 50.0
    assert shared.acquire().rate == 50.0


# -- bounded waiting ---------------------------------------------------------------------------


def test_a_slot_further_off_than_max_wait_raises_a_retryable_error_and_reserves_nothing(client):
    # Given: one call a second, half a second of patience
    shared = limiter(client, rate=1, max_wait=0.5)
    assert shared.acquire().wait == 0.0
    # When / Then: the next slot is a second away
    with pytest.raises(RateLimitWaitExceeded) as first:
        shared.acquire()
    with pytest.raises(RateLimitWaitExceeded) as second:
        shared.acquire()
    assert isinstance(first.value, RetryableError) and first.value.error_code == "RateLimitWaitExceeded"
    # the refused call took no slot: the next caller is not pushed a further second back
    assert 0.5 < first.value.wait_seconds <= 1.0 and 0.5 < second.value.wait_seconds <= 1.0
    assert "PIPELINE_RATELIMIT_MAX_WAIT=0.5" in str(first.value)


def test_waits_within_max_wait_are_slept(client):
    fake = FakeTime()
    shared = limiter(client, rate=4, max_wait=1.0, fake=fake)
    waits = [shared.acquire().wait for _ in range(5)]
    assert waits[0] == 0.0 and fake.sleeps == waits[1:]
    assert fake.sleeps == pytest.approx([0.25, 0.5, 0.75, 1.0], abs=0.05)


# -- Redis down ----------------------------------------------------------------------------------


def dead_redis() -> redis.Redis:
    """The product's kind of client, for a loopback port nothing listens on."""
    return redis_client(f"redis://127.0.0.1:{free_port()}/0")


@pytest.mark.parametrize("call", ["acquire", "report_throttle", "current_rate"])
def test_redis_unreachable_is_a_retryable_error(call):
    shared = RateLimiter(dead_redis(), rate=50)
    with pytest.raises(RateLimiterUnavailable) as caught:
        getattr(shared, call)()
    assert isinstance(caught.value, RetryableError) and caught.value.error_code == "RateLimiterUnavailable"


def test_a_redis_that_comes_up_later_is_used_without_a_new_limiter(spawn_redis):
    # Given: a limiter whose Redis is down
    port = free_port()
    shared = RateLimiter(redis_client(f"redis://127.0.0.1:{port}/0"), rate=50, name="late")
    with pytest.raises(RateLimiterUnavailable):
        shared.acquire()
    # When: the server starts on that port
    spawn_redis(port)
    # Then
    assert shared.acquire().wait == 0.0


# -- the Rekognition detector and the stand-in ----------------------------------------------------


def jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (120, 100), "teal").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def standin(moto_endpoint: str) -> Iterator[RekognitionStandIn]:
    with RekognitionStandIn(s3_endpoint_url=moto_endpoint) as running:
        yield running


@pytest.fixture
def image(s3: Any, bucket: str) -> ImageRef:
    s3.put_object(Bucket=bucket, Key="content/images/teal.jpg", Body=jpeg())
    return ImageRef(bucket, "content/images/teal.jpg")


def detector_on(standin: RekognitionStandIn, shared: RateLimiter | None) -> RekognitionDetector:
    """The product's detector with the product's client configuration (one attempt per call)."""
    client = aws_client("rekognition", standin.endpoint_url, aws.REKOGNITION_CONFIG)
    return RekognitionDetector(client=client, min_confidence=80.0, limiter=shared)


def test_detector_takes_a_slot_and_records_the_wait(client, standin, image):
    # Given: one call a second
    fake = FakeTime()
    detector = detector_on(standin, limiter(client, rate=1, max_wait=5, fake=fake))
    # When
    first, second = detector.detect(image), detector.detect(image)
    # Then: the first went at once, the second waited for its slot, and says how long
    assert first.waited_ms == 0.0
    assert len(fake.sleeps) == 1 and 0 < fake.sleeps[0] <= 1.0
    assert second.waited_ms == pytest.approx(fake.sleeps[0] * 1000)
    assert second.to_dict()["waited_ms"] == round(second.waited_ms, 3)
    assert standin.stats()["calls"] == 2


@pytest.mark.parametrize(
    ("code", "status"),
    [("ThrottlingException", None), ("ThrottlingException", 500), ("ProvisionedThroughputExceededException", None)],
    ids=["throttling-400", "throttling-500", "provisioned-throughput"],
)
def test_detector_reports_throttles_to_the_shared_limiter_then_raises_them(client, standin, image, code, status):
    # Given: two workers' detectors, and another worker's limiter, on the same Redis
    name = uuid.uuid4().hex
    detectors = [detector_on(standin, limiter(client, name=name, rate=50, recovery_seconds=NO_RECOVERY)) for _ in range(2)]
    other = limiter(client, name=name, rate=50, recovery_seconds=NO_RECOVERY)
    standin.fail_next(2, code, status=status)
    # When: each worker's call is throttled
    for detector in detectors:
        with pytest.raises(ThrottledError) as caught:
            detector.detect(image)
        # Then: the task sees the throttle (and retries it with back-off)
        assert caught.value.error_code == code
    # and the shared rate of every worker is halved
    assert other.current_rate() == pytest.approx(25.0, abs=1e-3)


def test_one_throttled_call_is_retried_without_slowing_every_worker(client, standin, image):
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY)
    standin.fail_next(1, "ThrottlingException")
    with pytest.raises(ThrottledError):
        detector_on(standin, shared).detect(image)
    assert shared.current_rate() == 50.0 and client.hget(shared.key, "lone_at") is not None


def test_the_stand_ins_quota_throttles_are_reported_too(client, standin, image):
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY)
    detector = detector_on(standin, shared)
    standin.set_quota(0)
    for _ in range(2):
        with pytest.raises(ThrottledError):
            detector.detect(image)
    assert standin.stats()["throttled"] == 2
    assert shared.current_rate() == pytest.approx(25.0, abs=1e-3)


def test_other_errors_leave_the_rate_alone(client, standin, image):
    shared = limiter(client, rate=50, recovery_seconds=NO_RECOVERY)
    standin.fail_next(1, "InternalServerError")
    with pytest.raises(RetryableError) as caught:
        detector_on(standin, shared).detect(image)
    assert caught.value.error_code == "InternalServerError"
    assert shared.current_rate() == 50.0


def test_limiter_redis_down_means_no_call_at_all(standin, image):
    detector = detector_on(standin, RateLimiter(dead_redis(), rate=50))
    with pytest.raises(RateLimiterUnavailable):
        detector.detect(image)
    assert standin.stats()["calls"] == 0


def test_detector_without_a_limiter_calls_straight_away(standin, image):
    detection = detector_on(standin, None).detect(image)
    assert detection.waited_ms is None and standin.stats()["calls"] == 1


# -- start-up ----------------------------------------------------------------------------------


def test_a_worker_whose_limiter_redis_is_unreachable_stops_at_start_up_naming_the_variable(pipeline_env):
    # Given: everything right but the limiter's Redis (with a password that must not be shown)
    env = {**pipeline_env, "PIPELINE_DETECTORS": "rekognition",
           "PIPELINE_RATELIMIT_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"}
    # When
    done = subprocess.run([sys.executable, "-m", "pipeline", "worker"], env=env, capture_output=True, text=True,
                          timeout=60)
    # Then
    assert done.returncode == 2, done.stderr
    assert "PIPELINE_RATELIMIT_URL=redis://:**@127.0.0.1:" in done.stderr
    assert "shared rate limiter cannot reach Redis" in done.stderr
    assert "s3cret" not in done.stderr and "Traceback" not in done.stderr


def test_peek_reads_rate_and_throttle_times_without_taking_a_slot(client: redis.Redis) -> None:
    # Given: a fresh limiter, then one lone throttle
    limiter = RateLimiter(client, rate=50.0, name=f"peek-{uuid.uuid4().hex[:8]}")
    fresh = limiter.peek()
    limiter.report_throttle()
    lone = limiter.peek()
    # Then: nothing before, a throttle but no cut after; peeking took no slot (no TAT written)
    assert (fresh.configured_rate, fresh.current_rate, fresh.last_throttle_age, fresh.last_cut_age) == (
        50.0, 50.0, None, None)
    assert lone.current_rate == 50.0 and lone.last_cut_age is None and 0 <= lone.last_throttle_age < 5
    assert client.hget(limiter.key, "tat") is None
