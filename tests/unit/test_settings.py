"""Settings.from_env: every PIPELINE_ variable, the defaults, and errors that name the variable."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigurationError
from pipeline.settings import (
    DEFAULT_BROKER_URL,
    DEMO_HASHLIST,
    PREFIX,
    Settings,
)

HASHLIST = "/srv/lists/known-bad.json"


def test_defaults() -> None:
    # When
    settings = Settings.from_env({})
    # Then
    assert settings == Settings()
    assert settings.broker_url is None
    assert settings.effective_broker_url == DEFAULT_BROKER_URL == "redis://127.0.0.1:6379/0"
    assert settings.database_url == "sqlite:///pipeline.db"
    assert settings.bucket == "moderation-uploads"
    assert (settings.events_queue, settings.dead_letter_queue, settings.review_queue) == (
        "moderation-events",
        "moderation-events-dlq",
        "moderation-review",
    )
    assert settings.prefix == "content/images/"
    assert settings.suffixes == (".jpg", ".jpeg", ".png")
    assert settings.detectors == ("rekognition",)
    assert settings.min_confidence == 80.0
    assert settings.block_categories == ()
    assert settings.hashlist_path is None
    assert settings.hashlist_max_distance == 10
    assert settings.hashlist_pdq_max_distance == 31
    assert settings.local_model_threads == 0
    assert (settings.tag_key, settings.tag_value) == ("BlockedContent", "true")
    assert settings.max_retries == 5
    assert settings.retry_backoff_max == 300
    assert settings.visibility_timeout == 3600
    assert settings.stale_after == 600
    assert (settings.sweep_interval, settings.sweep_batch, settings.backlog_high_water) == (60, 500, 1000)
    assert settings.allowed_buckets == ()
    assert settings.effective_allowed_buckets == ("moderation-uploads",)
    assert (settings.detect_queue, settings.default_queue) == ("detect", "pipeline")
    assert (settings.flower_address, settings.flower_port) == ("127.0.0.1", 5555)
    assert settings.log_level == "INFO"
    assert settings.state_dir == ".pipeline"


#: (variable, raw value, expected field value, other variables the value needs to validate)
VARIABLES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("PIPELINE_BROKER_URL", "redis://cache.internal:6380/2", "redis://cache.internal:6380/2", {}),
    ("PIPELINE_DATABASE_URL", "postgresql+psycopg://u@db/report", "postgresql+psycopg://u@db/report", {}),
    ("PIPELINE_BUCKET", "team-uploads", "team-uploads", {}),
    ("PIPELINE_EVENTS_QUEUE", "https://sqs.eu-west-1.amazonaws.com/1/ev", "https://sqs.eu-west-1.amazonaws.com/1/ev", {}),
    ("PIPELINE_DEAD_LETTER_QUEUE", "ev-dlq", "ev-dlq", {}),
    ("PIPELINE_REVIEW_QUEUE", "review", "review", {}),
    ("PIPELINE_PREFIX", "uploads/avatars/", "uploads/avatars/", {}),
    ("PIPELINE_SUFFIXES", ".jpg, .webp ,.gif", (".jpg", ".webp", ".gif"), {}),
    ("PIPELINE_DETECTORS", "rekognition,hashlist", ("rekognition", "hashlist"), {"PIPELINE_HASHLIST_PATH": HASHLIST}),
    ("PIPELINE_MIN_CONFIDENCE", "92.5", 92.5, {}),
    ("PIPELINE_MIN_CONFIDENCE", "0", 0.0, {}),
    ("PIPELINE_MIN_CONFIDENCE", "100", 100.0, {}),
    ("PIPELINE_BLOCK_CATEGORIES", "Explicit, Violence,,", ("Explicit", "Violence"), {}),
    ("PIPELINE_HASHLIST_PATH", HASHLIST, HASHLIST, {}),
    ("PIPELINE_HASHLIST_MAX_DISTANCE", "6", 6, {}),
    ("PIPELINE_HASHLIST_PDQ_MAX_DISTANCE", "24", 24, {}),
    ("PIPELINE_LOCAL_MODEL_THREADS", "2", 2, {}),
    ("PIPELINE_LOCAL_MODEL_THREADS", "0", 0, {}),
    ("PIPELINE_DETECTORS", "hashlist,local", ("hashlist", "local"), {"PIPELINE_HASHLIST_PATH": HASHLIST}),
    ("PIPELINE_TAG_KEY", "Moderation", "Moderation", {}),
    ("PIPELINE_TAG_VALUE", "blocked", "blocked", {}),
    ("PIPELINE_STATUS_TAG_KEY", "ModerationStatus", "ModerationStatus", {}),
    ("PIPELINE_MAX_RETRIES", "0", 0, {}),
    ("PIPELINE_MAX_RETRIES", "12", 12, {}),
    ("PIPELINE_RETRY_BACKOFF_MAX", "60", 60, {}),
    ("PIPELINE_VISIBILITY_TIMEOUT", "7200", 7200, {}),
    ("PIPELINE_STALE_AFTER", "900", 900, {}),
    ("PIPELINE_SWEEP_INTERVAL", "15", 15, {}),
    ("PIPELINE_SWEEP_BATCH", "50", 50, {}),
    ("PIPELINE_BACKLOG_HIGH_WATER", "200", 200, {}),
    ("PIPELINE_ALLOWED_BUCKETS", "team-a, team-b", ("team-a", "team-b"), {}),
    ("PIPELINE_DETECT_QUEUE", "gpu", "gpu", {}),
    ("PIPELINE_DEFAULT_QUEUE", "light", "light", {}),
    ("PIPELINE_FLOWER_ADDRESS", "0.0.0.0", "0.0.0.0", {}),
    ("PIPELINE_FLOWER_PORT", "8555", 8555, {}),
    ("PIPELINE_FLOWER_BASIC_AUTH", "ops:s3cret,viewer:other", "ops:s3cret,viewer:other", {}),
    ("PIPELINE_FLOWER_UNAUTHENTICATED", "true", True, {}),
    ("PIPELINE_FLOWER_UNAUTHENTICATED", "False", False, {}),
    ("PIPELINE_METRICS_ADDRESS", "0.0.0.0", "0.0.0.0", {}),
    ("PIPELINE_METRICS_PORT", "9100", 9100, {}),
    ("PIPELINE_METRICS_PORT", "0", 0, {}),
    ("PIPELINE_LOG_FORMAT", "JSON", "json", {}),
    ("PIPELINE_LOG_LEVEL", "debug", "DEBUG", {}),
    ("PIPELINE_LOG_LEVEL", "WARNING", "WARNING", {}),
    ("PIPELINE_STATE_DIR", "/var/lib/pipeline", "/var/lib/pipeline", {}),
    # -- shared Rekognition rate limit --
    ("PIPELINE_RATELIMIT_URL", "rediss://limits.internal:6380/1", "rediss://limits.internal:6380/1", {}),
    ("PIPELINE_RATELIMIT_RATE", "48", 48.0, {}),
    ("PIPELINE_RATELIMIT_RATE", "0", 0.0, {}),
    ("PIPELINE_RATELIMIT_RATE", "0.5", 0.5, {}),
    ("PIPELINE_RATELIMIT_BURST", "5", 5, {}),
    ("PIPELINE_RATELIMIT_MAX_WAIT", "2.5", 2.5, {}),
    ("PIPELINE_RATELIMIT_RECOVERY_SECONDS", "120", 120.0, {}),
]


@pytest.mark.parametrize(("variable", "raw", "expected", "extra"), VARIABLES)
def test_every_variable_parses(variable: str, raw: str, expected: Any, extra: dict[str, str]) -> None:
    # Given: surrounding whitespace, as a shell or an .env file may leave it
    environ = {variable: f"  {raw} ", **extra}
    # When
    settings = Settings.from_env(environ)
    # Then
    assert getattr(settings, variable.removeprefix(PREFIX).lower()) == expected


def test_the_table_covers_every_field() -> None:
    covered = {variable for variable, *_ in VARIABLES}
    assert covered == {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_variable_counts_as_unset(blank: str) -> None:
    settings = Settings.from_env({"PIPELINE_TAG_KEY": blank, "PIPELINE_MIN_CONFIDENCE": blank})
    assert (settings.tag_key, settings.min_confidence) == ("BlockedContent", 80.0)


def test_variables_without_the_prefix_are_ignored() -> None:
    assert Settings.from_env({"BUCKET": "other", "MIN_CONFIDENCE": "1", "pipeline_bucket": "lower"}) == Settings()


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_BUCKET", "from-os-environ")
    assert Settings.from_env().bucket == "from-os-environ"


def test_explicit_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"PIPELINE_BUCKET": "from-env", "PIPELINE_MAX_RETRIES": "3"}, bucket="explicit")
    assert (settings.bucket, settings.max_retries) == ("explicit", 3)


def test_suffixes_are_lower_cased() -> None:
    assert Settings.from_env({"PIPELINE_SUFFIXES": ".JPG,.Png,.jpeg"}).suffixes == (".jpg", ".png", ".jpeg")


#: (environment, variable the error must name)
BAD_VALUES: list[tuple[dict[str, str], str]] = [
    ({"PIPELINE_MIN_CONFIDENCE": "high"}, "PIPELINE_MIN_CONFIDENCE"),
    ({"PIPELINE_MIN_CONFIDENCE": "101"}, "PIPELINE_MIN_CONFIDENCE"),
    ({"PIPELINE_MIN_CONFIDENCE": "-0.5"}, "PIPELINE_MIN_CONFIDENCE"),
    ({"PIPELINE_MIN_CONFIDENCE": "nan"}, "PIPELINE_MIN_CONFIDENCE"),
    ({"PIPELINE_DETECTORS": "rekognition,magic"}, "PIPELINE_DETECTORS"),
    ({"PIPELINE_DETECTORS": ","}, "PIPELINE_DETECTORS"),
    ({"PIPELINE_DETECTORS": "local,local"}, "PIPELINE_DETECTORS"),
    ({"PIPELINE_DETECTORS": "hashlist"}, "PIPELINE_HASHLIST_PATH"),
    ({"PIPELINE_MAX_RETRIES": "-1"}, "PIPELINE_MAX_RETRIES"),
    ({"PIPELINE_MAX_RETRIES": "five"}, "PIPELINE_MAX_RETRIES"),
    ({"PIPELINE_MAX_RETRIES": "2.5"}, "PIPELINE_MAX_RETRIES"),
    ({"PIPELINE_HASHLIST_MAX_DISTANCE": "-1"}, "PIPELINE_HASHLIST_MAX_DISTANCE"),
    ({"PIPELINE_STALE_AFTER": "-10"}, "PIPELINE_STALE_AFTER"),
    ({"PIPELINE_STALE_AFTER": "300"}, "PIPELINE_STALE_AFTER"),
    ({"PIPELINE_STALE_AFTER": "20", "PIPELINE_RETRY_BACKOFF_MAX": "30"}, "PIPELINE_STALE_AFTER"),
    ({"PIPELINE_SWEEP_INTERVAL": "0"}, "PIPELINE_SWEEP_INTERVAL"),
    ({"PIPELINE_SWEEP_BATCH": "-5"}, "PIPELINE_SWEEP_BATCH"),
    ({"PIPELINE_BACKLOG_HIGH_WATER": "0"}, "PIPELINE_BACKLOG_HIGH_WATER"),
    ({"PIPELINE_FLOWER_PORT": "http"}, "PIPELINE_FLOWER_PORT"),
    ({"PIPELINE_STATUS_TAG_KEY": "BlockedContent"}, "PIPELINE_STATUS_TAG_KEY"),
    ({"PIPELINE_STATUS_TAG_KEY": "aws:status"}, "PIPELINE_STATUS_TAG_KEY"),
    ({"PIPELINE_STATUS_TAG_KEY": "k" * 129}, "PIPELINE_STATUS_TAG_KEY"),
    ({"PIPELINE_STATUS_TAG_KEY": "status<1>"}, "PIPELINE_STATUS_TAG_KEY"),
    ({"PIPELINE_FLOWER_PORT": "70000"}, "PIPELINE_FLOWER_PORT"),
    ({"PIPELINE_BLOCK_CATEGORIES": "Explict"}, "PIPELINE_BLOCK_CATEGORIES"),
    ({"PIPELINE_BLOCK_CATEGORIES": "Violence,Explicit Nudity"}, "PIPELINE_BLOCK_CATEGORIES"),
    ({"PIPELINE_DETECTORS": "nudenet"}, "PIPELINE_DETECTORS"),
    ({"PIPELINE_HASHLIST_PDQ_MAX_DISTANCE": "-1"}, "PIPELINE_HASHLIST_PDQ_MAX_DISTANCE"),
    ({"PIPELINE_HASHLIST_PDQ_MAX_DISTANCE": "31.5"}, "PIPELINE_HASHLIST_PDQ_MAX_DISTANCE"),
    ({"PIPELINE_LOCAL_MODEL_THREADS": "-1"}, "PIPELINE_LOCAL_MODEL_THREADS"),
    ({"PIPELINE_LOCAL_MODEL_THREADS": "257"}, "PIPELINE_LOCAL_MODEL_THREADS"),
    ({"PIPELINE_LOCAL_MODEL_THREADS": "auto"}, "PIPELINE_LOCAL_MODEL_THREADS"),
    ({"PIPELINE_PREFIX": "/content/images/"}, "PIPELINE_PREFIX"),
    ({"PIPELINE_SUFFIXES": "jpg,.png"}, "PIPELINE_SUFFIXES"),
    ({"PIPELINE_FLOWER_PORT": "0"}, "PIPELINE_FLOWER_PORT"),
    ({"PIPELINE_FLOWER_BASIC_AUTH": "ops"}, "PIPELINE_FLOWER_BASIC_AUTH"),
    ({"PIPELINE_FLOWER_BASIC_AUTH": "ops:pw,:nouser"}, "PIPELINE_FLOWER_BASIC_AUTH"),
    ({"PIPELINE_FLOWER_BASIC_AUTH": "ops:"}, "PIPELINE_FLOWER_BASIC_AUTH"),
    ({"PIPELINE_FLOWER_UNAUTHENTICATED": "maybe"}, "PIPELINE_FLOWER_UNAUTHENTICATED"),
    ({"PIPELINE_METRICS_PORT": "-1"}, "PIPELINE_METRICS_PORT"),
    ({"PIPELINE_METRICS_PORT": "65536"}, "PIPELINE_METRICS_PORT"),
    ({"PIPELINE_LOG_FORMAT": "xml"}, "PIPELINE_LOG_FORMAT"),
    ({"PIPELINE_RETRY_BACKOFF_MAX": "-1"}, "PIPELINE_RETRY_BACKOFF_MAX"),
    ({"PIPELINE_VISIBILITY_TIMEOUT": "0", "PIPELINE_RETRY_BACKOFF_MAX": "0"}, "PIPELINE_VISIBILITY_TIMEOUT"),
    ({"PIPELINE_VISIBILITY_TIMEOUT": "1h"}, "PIPELINE_VISIBILITY_TIMEOUT"),
    ({"PIPELINE_LOG_LEVEL": "LOUD"}, "PIPELINE_LOG_LEVEL"),
    ({"PIPELINE_RETRY_BACKOFF_MAX": "3600"}, "PIPELINE_RETRY_BACKOFF_MAX"),
    ({"PIPELINE_RETRY_BACKOFF_MAX": "120", "PIPELINE_VISIBILITY_TIMEOUT": "60"}, "PIPELINE_RETRY_BACKOFF_MAX"),
    # -- shared Rekognition rate limit --
    ({"PIPELINE_RATELIMIT_RATE": "-1"}, "PIPELINE_RATELIMIT_RATE"),
    ({"PIPELINE_RATELIMIT_RATE": "nan"}, "PIPELINE_RATELIMIT_RATE"),
    ({"PIPELINE_RATELIMIT_RATE": "inf"}, "PIPELINE_RATELIMIT_RATE"),
    ({"PIPELINE_RATELIMIT_RATE": "fast"}, "PIPELINE_RATELIMIT_RATE"),
    ({"PIPELINE_RATELIMIT_BURST": "-1"}, "PIPELINE_RATELIMIT_BURST"),
    ({"PIPELINE_RATELIMIT_BURST": "2.5"}, "PIPELINE_RATELIMIT_BURST"),
    ({"PIPELINE_RATELIMIT_MAX_WAIT": "0"}, "PIPELINE_RATELIMIT_MAX_WAIT"),
    ({"PIPELINE_RATELIMIT_MAX_WAIT": "-3"}, "PIPELINE_RATELIMIT_MAX_WAIT"),
    ({"PIPELINE_RATELIMIT_RECOVERY_SECONDS": "0"}, "PIPELINE_RATELIMIT_RECOVERY_SECONDS"),
    ({"PIPELINE_RATELIMIT_URL": "http://limits.internal:6379"}, "PIPELINE_RATELIMIT_URL"),
    ({"PIPELINE_BROKER_URL": "amqp://guest@rabbit//"}, "PIPELINE_RATELIMIT_URL"),
]


@pytest.mark.parametrize(("environ", "variable"), BAD_VALUES)
def test_bad_value_raises_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ)
    assert variable in str(caught.value)
    assert caught.value.error_code == "ConfigurationError"


def test_unparsable_value_is_quoted_in_the_message() -> None:
    with pytest.raises(ConfigurationError, match=r"PIPELINE_MIN_CONFIDENCE='high' is invalid"):
        Settings.from_env({"PIPELINE_MIN_CONFIDENCE": "high"})


@pytest.mark.parametrize(
    ("field", "variable"),
    [("tag_key", "PIPELINE_TAG_KEY"), ("tag_value", "PIPELINE_TAG_VALUE")],
)
def test_empty_tag_key_or_value_raises(field: str, variable: str) -> None:
    # A blank variable counts as unset, so an empty tag can only come from code.
    with pytest.raises(ConfigurationError) as from_env:
        Settings.from_env({}, **{field: ""})
    with pytest.raises(ConfigurationError) as replaced:
        Settings().replace(**{field: ""})
    assert variable in str(from_env.value)
    assert variable in str(replaced.value)


def test_replace_returns_a_validated_copy() -> None:
    base = Settings()
    changed = base.replace(bucket="elsewhere", max_retries=2)
    assert (changed.bucket, changed.max_retries) == ("elsewhere", 2)
    assert base.bucket == "moderation-uploads"
    with pytest.raises(ConfigurationError, match="PIPELINE_MIN_CONFIDENCE"):
        base.replace(min_confidence=150)


# -- local stack defaults --------------------------------------------------------------------


def test_local_defaults() -> None:
    # When
    settings = Settings.from_env({}, local=True)
    # Then
    assert settings.detectors == ("hashlist", "local")  # the test extra installs the model
    assert settings.hashlist_path == DEMO_HASHLIST
    assert Path(settings.hashlist_path).is_file()
    assert settings.database_url == f"sqlite:///{Path('.pipeline').resolve() / 'pipeline.db'}"


def test_local_database_lives_in_the_state_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"PIPELINE_STATE_DIR": str(tmp_path)}, local=True)
    assert settings.state_dir == str(tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'pipeline.db'}"


@pytest.mark.parametrize(
    ("variable", "raw", "field", "expected"),
    [
        ("PIPELINE_DETECTORS", "rekognition", "detectors", ("rekognition",)),
        ("PIPELINE_HASHLIST_PATH", HASHLIST, "hashlist_path", HASHLIST),
        ("PIPELINE_DATABASE_URL", "postgresql+psycopg://u@db/report", "database_url", "postgresql+psycopg://u@db/report"),
    ],
)
def test_explicit_variables_win_over_local_defaults(variable: str, raw: str, field: str, expected: Any) -> None:
    assert getattr(Settings.from_env({variable: raw}, local=True), field) == expected


def test_local_is_off_by_default() -> None:
    assert Settings.from_env({}).detectors == ("rekognition",)


# -- value semantics -------------------------------------------------------------------------


def test_settings_is_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.bucket = "other"  # type: ignore[misc]


def test_settings_is_hashable_by_value() -> None:
    # Given: equal settings built two ways (the runtime cache is keyed on them)
    parsed = Settings.from_env({"PIPELINE_SUFFIXES": ".jpg", "PIPELINE_BLOCK_CATEGORIES": "Explicit"})
    built = Settings(suffixes=(".jpg",), block_categories=("Explicit",))
    # Then
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert {parsed: "cached"}[built] == "cached"
    assert len({Settings(), Settings(), Settings(bucket="other")}) == 2


def test_local_stack_without_the_model_extra_uses_the_hash_list_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given: nudenet not importable, as on a Rekognition-only install
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nudenet" else real_find_spec(name, *a))
    # When / Then
    assert Settings.from_env({}, local=True).detectors == ("hashlist",)
    with pytest.raises(ConfigurationError, match=r"PIPELINE_DETECTORS includes local, but the `model` extra is not installed"):
        Settings.from_env({"PIPELINE_DETECTORS": "local"})


def test_flower_credentials_are_never_shown() -> None:
    # Given: credentials, one of them malformed
    settings = Settings.from_env({"PIPELINE_FLOWER_BASIC_AUTH": "ops:s3cret, viewer:other"})
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"PIPELINE_FLOWER_BASIC_AUTH": "ops:s3cret,broken"})
    # Then: the pairs are there for Flower, but neither the repr nor the error quotes a password
    assert settings.flower_credentials == ["ops:s3cret", "viewer:other"]
    assert "s3cret" not in repr(settings) and "s3cret" not in str(caught.value)
