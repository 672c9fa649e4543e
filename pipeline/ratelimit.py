"""The shared Rekognition rate limit: one limiter in Redis for every worker on every machine.

**GCRA.** Redis keeps the *theoretical arrival time* (TAT) of the next call. At rate ``r`` a
call's slot is ``max(now, TAT - burst / r)`` and taking it moves TAT on by ``1 / r``: with burst
0 calls are spaced exactly ``1 / r`` apart; with burst ``b`` up to ``b`` extra calls may go at
once after an idle spell, so no second ever holds more than ``r + b`` calls. One Lua script does
the check and the reservation atomically, and reads the time with Redis ``TIME``, so every
machine shares one clock and no two workers can take the same slot.

**Reservation, bounded.** :meth:`RateLimiter.acquire` reserves the next slot and sleeps until it.
A slot further off than ``max_wait`` (PIPELINE_RATELIMIT_MAX_WAIT) is not reserved:
:class:`~pipeline.errors.RateLimitWaitExceeded` (retryable) tells the task to retry later with
back-off instead of holding its worker. Redis unreachable raises
:class:`~pipeline.errors.RateLimiterUnavailable` (retryable): Rekognition is never called unlimited.

**Adaptive (AIMD).** Throttling answers reported with :meth:`RateLimiter.report_throttle`
multiply the *shared* rate by :data:`DECREASE_FACTOR`, never below :func:`floor_rate`, and at
most once per :data:`DECREASE_WINDOW_SECONDS`, so a dozen workers hit by the same burst of
throttles cut it once. A lone throttle, with no other within :data:`CONFIRM_SECONDS`, is taken
for jitter at the edge of the quota (a late packet, a paused process) and only noted: the call
is retried, but the fleet does not lose half its rate for it. A real overrun throttles call
after call, so the second throttle confirms it at once. After a cut the rate climbs back
linearly, from the floor to the configured rate in PIPELINE_RATELIMIT_RECOVERY_SECONDS; throttles
during the climb hold it where it is (it climbs only while no throttle comes), and after the
window cut it again.

**State.** One Redis hash per limiter, ``pipeline:ratelimit:{rekognition}`` (the braces are a
Redis Cluster hash tag), with fields ``tat``, ``eff`` and ``since`` (the rate after the last
throttle, and when it came), ``cut_at`` (the last cut) and ``lone_at`` (a throttle not yet
confirmed). It expires when idle long enough to have nothing left to remember.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pipeline.errors import ConfigurationError, RateLimiterUnavailable, RateLimitWaitExceeded
from pipeline.settings import DEFAULT_RATELIMIT_MAX_WAIT, DEFAULT_RATELIMIT_RECOVERY_SECONDS, Settings

log = logging.getLogger(__name__)

#: Every limiter's hash key starts with this; the limiter's name follows in braces (a hash tag).
KEY_PREFIX = "pipeline:ratelimit:"
#: The limiter every Rekognition call goes through.
REKOGNITION = "rekognition"
#: A throttle multiplies the shared rate by this (TCP's multiplicative decrease).
DECREASE_FACTOR = 0.5
#: At most one cut per this many seconds: the throttles of calls already sent (in flight, or
#: still inside the service's 1-second window) answer the same overrun and must not cut again.
DECREASE_WINDOW_SECONDS = 2.0
#: A throttle cuts the rate only when another came within this many seconds (the quota's window).
CONFIRM_SECONDS = 1.0
#: The shared rate never drops below this share of the configured rate ...
FLOOR_SHARE = 0.05
#: ... nor below this many calls/s (unless the configured rate itself is lower).
MIN_FLOOR_RATE = 1.0
#: Fresh slots a caller that keeps waking late may take before it goes anyway.
MAX_RETAKES = 3
#: The hash outlives its last use by this much beyond recovery and the longest wait.
TTL_MARGIN_SECONDS = 60.0
#: A Redis that does not answer within this many seconds counts as unreachable.
REDIS_TIMEOUT_SECONDS = 2.0
#: Retries of a failed Redis command (a dropped connection) before the task is told to retry.
REDIS_RETRIES = 2
#: Longest pause between those retries, seconds; redis-py's own default grows to 10 s.
REDIS_RETRY_CAP_SECONDS = 0.2

#: The limiter, run atomically by Redis. KEYS[1]: the limiter's hash. ARGV: op, then the numbers.
LUA = """
-- ARGV: op ('acquire' | 'throttle' | 'peek'), rate, burst, max_wait, floor, factor, window,
--       recovery (calls/s regained per second without throttles), ttl_ms, confirm
-- Redis < 5 only replicates scripts that write after TIME by their effects when asked; later a no-op.
if redis.replicate_commands then redis.replicate_commands() end

local key, op = KEYS[1], ARGV[1]
local rate, burst, max_wait = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local floor, factor, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local recovery, ttl_ms, confirm = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

-- The Redis server's clock: every worker on every machine agrees on "now".
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000

local state = redis.call('HMGET', key, 'tat', 'eff', 'since', 'cut_at', 'lone_at')
local tat = tonumber(state[1]) or now
local eff, since = tonumber(state[2]), tonumber(state[3])
local cut_at, lone_at = tonumber(state[4]), tonumber(state[5])

-- Lua's tostring keeps 14 digits (0.1 ms of an epoch time) and a number reply would be truncated
-- to an integer: store and return text with microseconds.
local function fmt(x) return string.format('%.6f', x) end

-- After a throttle the shared rate climbs back linearly from eff, never above the configured rate.
local function current_rate()
  if not eff then return rate end
  return math.min(rate, eff + recovery * (now - since))
end

if op == 'acquire' then
  local r = current_rate()
  local interval = 1 / r
  tat = math.max(tat, now)
  local slot = math.max(now, tat - burst * interval)
  if slot - now > max_wait then
    return {0, fmt(slot - now), fmt(r), fmt(slot)}  -- too far off: nothing reserved
  end
  redis.call('HSET', key, 'tat', fmt(tat + interval))
  redis.call('PEXPIRE', key, ttl_ms)
  return {1, fmt(slot - now), fmt(r), fmt(slot)}
elseif op == 'throttle' then
  local r = current_rate()
  local status, lowered = 'noted', r
  if cut_at and now - cut_at < window then
    status = 'answered'  -- this overrun was answered already
  elseif lone_at and now - lone_at <= confirm then
    status, lowered = 'cut', math.max(floor, r * factor)
    redis.call('HSET', key, 'cut_at', fmt(now))
    redis.call('HDEL', key, 'lone_at')
  else
    redis.call('HSET', key, 'lone_at', fmt(now))  -- alone so far: jitter, unless another follows
  end
  -- The climb counts only time without throttles: it starts again from here.
  if lowered < rate then
    redis.call('HSET', key, 'eff', fmt(lowered), 'since', fmt(now))
  end
  redis.call('PEXPIRE', key, ttl_ms)
  return {status, fmt(r), fmt(lowered)}
end
-- peek: the rate now, the clock, and when the last cut / lone throttle / throttle came ('' if never)
local function opt(x) if x then return fmt(x) end return '' end
return {1, fmt(current_rate()), fmt(now), opt(cut_at), opt(lone_at), opt(since)}
"""


def floor_rate(rate: float) -> float:
    """The lowest the shared rate may be cut to: 5% of ``rate``, at least 1/s, at most ``rate``."""
    return min(rate, max(MIN_FLOOR_RATE, FLOOR_SHARE * rate))


@dataclass(frozen=True)
class Grant:
    """A slot the limiter gave: ``slot`` on the Redis clock, ``wait`` the script asked for,
    ``waited`` the seconds :meth:`RateLimiter.acquire` took in all, ``rate`` the shared rate then,
    ``retakes`` how many earlier slots were given up because the caller woke too late for them."""

    slot: float
    wait: float
    waited: float
    rate: float
    retakes: int = 0


@dataclass(frozen=True)
class LimiterState:
    """What :meth:`RateLimiter.peek` reads: the shared rate now against the configured one, and
    how long ago (seconds, on the Redis clock) the last throttle was reported and the last cut
    made; None when there was none since the limiter's state last expired."""

    configured_rate: float
    current_rate: float
    last_throttle_age: float | None
    last_cut_age: float | None


class RateLimiter:
    """One GCRA limiter in Redis, shared by every process that uses the same Redis and ``name``.

    Thread-safe (redis-py clients are); ``sleep`` and ``clock`` can be replaced for tests.
    """

    def __init__(self, client: redis.Redis, *, rate: float, burst: int = 0,
                 max_wait: float = DEFAULT_RATELIMIT_MAX_WAIT,
                 recovery_seconds: float = DEFAULT_RATELIMIT_RECOVERY_SECONDS, name: str = REKOGNITION,
                 decrease_window: float = DECREASE_WINDOW_SECONDS, confirm_window: float = CONFIRM_SECONDS,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or burst < 0 or not max_wait > 0 or not recovery_seconds > 0:
            raise ValueError("RateLimiter needs rate > 0, burst >= 0, max_wait > 0 and recovery_seconds > 0")
        self.rate, self.burst, self.max_wait = float(rate), int(burst), float(max_wait)
        self.floor = floor_rate(self.rate)
        #: calls/s regained per second without a cut: floor to full rate in ``recovery_seconds``.
        self.recovery = (self.rate - self.floor) / recovery_seconds
        self.key = f"{KEY_PREFIX}{{{name}}}"
        self._decrease_window, self._confirm_window = decrease_window, confirm_window
        self._ttl_ms = math.ceil((recovery_seconds + max_wait + TTL_MARGIN_SECONDS) * 1000)
        self._script = client.register_script(LUA)
        self._sleep, self._clock = sleep, clock
        self._last_rate = self.rate

    def acquire(self) -> Grant:
        """Reserve the next slot and sleep until it; RateLimitWaitExceeded when it is too far off.

        A caller that wakes more than one interval after its slot (a starved or paused process)
        takes a fresh slot, up to MAX_RETAKES times and within the same ``max_wait``: sending late,
        into the slots of the callers after it, would bunch calls above the rate.
        """
        started = self._clock()
        for retakes in range(MAX_RETAKES + 1):
            slot, wait, rate, late = self._reserve_and_sleep(self.max_wait - (self._clock() - started))
            if late <= 1 / rate:
                break
        self._note_recovery(rate)
        return Grant(slot=slot, wait=wait, waited=self._clock() - started, rate=rate, retakes=retakes)

    def _reserve_and_sleep(self, max_wait: float) -> tuple[float, float, float, float]:
        """One reservation within ``max_wait``, slept until: (slot, wait, rate, seconds woken late)."""
        granted, wait, rate, slot = (float(value) for value in self._run("acquire", max_wait))
        if not granted:
            raise RateLimitWaitExceeded(
                f"next Rekognition slot is {wait:.1f} s away (shared rate {rate:.1f}/s), over "
                f"PIPELINE_RATELIMIT_MAX_WAIT={self.max_wait:g} s: retrying later", wait_seconds=wait)
        due = self._clock() + wait
        if wait > 0:
            self._sleep(wait)
        return slot, wait, rate, self._clock() - due

    def report_throttle(self) -> str:
        """Tell every worker the service throttled. Returns what became of it:
        ``"cut"`` (this report lowered the shared rate), ``"noted"`` (a lone throttle so far) or
        ``"answered"`` (the rate was cut for this overrun already)."""
        status, before, after = self._run("throttle")
        status, before, after = status.decode(), float(before), float(after)
        if status == "cut":
            log.warning("Rekognition throttled: shared rate lowered from %.1f to %.1f calls/s for every worker; "
                        "it climbs back by %.2f calls/s each second", before, after, self.recovery)
        elif status == "noted":
            log.info("Rekognition throttled once at %.1f calls/s; the shared rate is lowered if another "
                     "throttle follows within %g s", after, self._confirm_window)
        else:
            log.info("Rekognition throttled; the shared rate (now %.1f calls/s) was lowered for this "
                     "overrun already", after)
        self._last_rate = after
        return status

    def current_rate(self) -> float:
        """The shared rate right now, calls/s (after cuts and recovery)."""
        return float(self._run("peek")[1])

    def peek(self) -> LimiterState:
        """The shared state without taking a slot; RateLimiterUnavailable when Redis does not answer."""
        _, rate, now, cut_at, lone_at, since = (value.decode() if isinstance(value, bytes) else str(value)
                                                for value in self._run("peek"))
        throttles = [float(at) for at in (cut_at, lone_at, since) if at]
        return LimiterState(configured_rate=self.rate, current_rate=float(rate),
                            last_throttle_age=float(now) - max(throttles) if throttles else None,
                            last_cut_age=float(now) - float(cut_at) if cut_at else None)

    def _run(self, op: str, max_wait: float | None = None) -> list[Any]:
        """One atomic step of the script; a Redis failure becomes RateLimiterUnavailable."""
        max_wait = self.max_wait if max_wait is None else max_wait
        args = [op, self.rate, self.burst, max_wait, self.floor, DECREASE_FACTOR, self._decrease_window,
                self.recovery, self._ttl_ms, self._confirm_window]
        try:
            return self._script(keys=[self.key], args=args)
        except redis.RedisError as exc:
            raise RateLimiterUnavailable(f"shared rate limiter's Redis unavailable: {type(exc).__name__}: {exc}") from exc

    def _note_recovery(self, rate: float) -> None:
        """Say once per process when the shared rate is back at the configured rate after a cut."""
        if rate >= self.rate > self._last_rate:
            log.info("Rekognition shared rate back at the configured %.1f calls/s", self.rate)
        self._last_rate = rate


def limiter_from_settings(settings: Settings, *, name: str = REKOGNITION) -> RateLimiter | None:
    """A limiter on the configured Redis; None when the limit is off (PIPELINE_RATELIMIT_RATE=0)."""
    if settings.ratelimit_rate <= 0:
        return None
    url = settings.effective_ratelimit_url
    if url is None:  # Settings.validate prevents this whenever rekognition is configured
        raise ConfigurationError("PIPELINE_RATELIMIT_URL must be set: the shared rate limit lives in Redis")
    return RateLimiter(redis_client(url), rate=settings.ratelimit_rate, burst=settings.ratelimit_burst,
                       max_wait=settings.ratelimit_max_wait, recovery_seconds=settings.ratelimit_recovery_seconds,
                       name=name)


def shared_limiter(settings: Settings) -> RateLimiter | None:
    """The Rekognition limiter of this process (made once per process id, like ``pipeline.aws``)."""
    return _shared_limiter(settings, os.getpid())


@functools.lru_cache(maxsize=4)
def _shared_limiter(settings: Settings, pid: int) -> RateLimiter | None:
    return limiter_from_settings(settings)


def check_reachable(settings: Settings) -> None:
    """Start-up check: ConfigurationError naming the variable when the limiter's Redis does not answer."""
    url = settings.effective_ratelimit_url
    if not settings.ratelimit_enabled or url is None:
        return
    variable = "PIPELINE_RATELIMIT_URL" if settings.ratelimit_url else "PIPELINE_BROKER_URL"
    client = redis_client(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigurationError(f"{variable}={_safe_url(url)}: the shared rate limiter cannot reach Redis: {exc}") from None
    finally:
        client.close()


def redis_client(url: str) -> redis.Redis:
    """A client that gives up quickly: a dead Redis must fail the task (to retry later), not hang it."""
    retry = Retry(ExponentialBackoff(cap=REDIS_RETRY_CAP_SECONDS, base=REDIS_RETRY_CAP_SECONDS / 4), REDIS_RETRIES)
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                socket_timeout=REDIS_TIMEOUT_SECONDS, retry=retry)


def _safe_url(url: str) -> str:
    """The URL with any password replaced, for messages."""
    from kombu.utils.url import maybe_sanitize_url

    return maybe_sanitize_url(url)


__all__ = ["Grant", "LimiterState", "RateLimiter", "check_reachable", "floor_rate", "limiter_from_settings",
           "redis_client", "shared_limiter"]
