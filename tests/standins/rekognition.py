"""A Rekognition stand-in that serves ``DetectModerationLabels`` over the real AWS JSON 1.1 protocol.

moto does not implement DetectModerationLabels, so tests and benchmarks point the product's plain
boto3 client at this server (``AWS_ENDPOINT_URL_REKOGNITION=http://127.0.0.1:PORT``). It lives
under ``tests/`` only: the product contains no fake.

Protocol (botocore's service model ``rekognition/2016-06-27``: ``protocol: json``,
``jsonVersion: 1.1``, ``targetPrefix: RekognitionService``): ``POST /`` with
``X-Amz-Target: RekognitionService.DetectModerationLabels`` and
``Content-Type: application/x-amz-json-1.1``. Errors are a JSON body
``{"__type", "Code", "Logref", "Message"}`` plus the ``x-amzn-ErrorType`` header, the shape of
the sample in the Rekognition Developer Guide, "Error handling" (``error-handling.md``).
Signatures are not verified.

Behaviour, in the order a call meets it::

    X-Amz-Target -> latency_s sleep -> quota (ThrottlingException) -> fail_next injections
        -> request validation -> S3 GetObject -> image checks -> first matching rule

Limits and messages, with their sources (Rekognition Developer Guide, docs.aws.amazon.com/
rekognition/latest/dg/, mirrored in github.com/awsdocs/amazon-rekognition-developer-guide):

- limits.html: an image stored as an S3 object is limited to 15 MB; minimum image dimensions are
  80 px for both height and width; maximum dimensions for DetectModerationLabels are 10K px.
- error-handling.html, message and status per exception: ImageTooLargeException "Image size is
  too large." (400); InvalidImageFormatException "Request has invalid image format." (400);
  InvalidParameterException "Request has invalid parameters." (400); InvalidS3ObjectException
  "Unable to get object metadata from S3. Check object key, region and/or access permissions."
  or "Request has invalid S3 object." (400); ProvisionedThroughputExceededException "Provisioned
  Rate exceeded." (400); InternalServerError "Internal server error" (500). ThrottlingException
  is listed twice: 400 "Slow down; sudden increase in rate of requests." and 500 "Service
  Unavailable" (API_DetectModerationLabels.html gives 500). The quota answers 400 "Rate exceeded"
  (what the service sends for a TPS overrun in practice); ``fail_next(..., status=500)`` gives the
  other form, so callers can be tested against both.
- API_DetectModerationLabels.html: without MinConfidence, labels with confidence >= 50 are returned.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import collections
import fnmatch
import hashlib
import io
import ipaddress
import json
import logging
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

TARGET_PREFIX = "RekognitionService"  #: service model metadata.targetPrefix
OPERATION = "DetectModerationLabels"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"  #: service model metadata.jsonVersion 1.1
MODERATION_MODEL_VERSION = "7.0"  #: current moderation taxonomy version
DEFAULT_MIN_CONFIDENCE = 50.0  #: API reference: the default when MinConfidence is omitted
MAX_S3_IMAGE_BYTES = 15 * 1024 * 1024  #: limits.html "limited to 15 MB" (read as MiB)
MAX_BYTES_IMAGE = 5 * 1024 * 1024  #: service model ImageBlob max 5242880 (Image.Bytes)
MIN_IMAGE_DIMENSION = 80  #: limits.html: minimum height and width in pixels
MAX_IMAGE_DIMENSION = 10_000  #: limits.html: DetectModerationLabels maximum width and height
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG"})  #: limits.html: PNG and JPEG only
QUOTA_WINDOW_SECONDS = 1.0  #: the sliding window the quota counts calls in
MAX_ACCEPTED_TIMESTAMPS = 100_000  #: bound on the accepted-call timestamps kept for stats
DEFAULT_REGION = "us-east-1"  #: S3 client region when none is configured
DUMMY_CREDENTIAL = "testing"  #: S3 client key and secret when none are configured
S3_POOL_SIZE = 64  #: S3 connections, enough for benchmark concurrency
IDLE_CONNECTION_TIMEOUT_S = 60  #: idle keep-alive connections are closed after this
CONTROL_PREFIX = "/_standin/"  #: test-only control endpoints live under this path

MESSAGE_S3_METADATA = (
    "Unable to get object metadata from S3. Check object key, region and/or access permissions."
)
MESSAGE_S3_INVALID = "Request has invalid S3 object."
MESSAGE_INVALID_PARAMETERS = "Request has invalid parameters."
MESSAGE_INVALID_FORMAT = "Request has invalid image format."
MESSAGE_TOO_LARGE = "Image size is too large."
MESSAGE_RATE_EXCEEDED = "Rate exceeded"

#: Default (HTTP status, message) per error code, from error-handling.html (see module docstring).
ERROR_DEFAULTS: dict[str, tuple[int, str]] = {
    "AccessDeniedException": (400, "User is not authorized to perform: rekognition:DetectModerationLabels"),
    "ImageTooLargeException": (400, MESSAGE_TOO_LARGE),
    "InternalServerError": (500, "Internal server error"),
    "InvalidImageFormatException": (400, MESSAGE_INVALID_FORMAT),
    "InvalidParameterException": (400, MESSAGE_INVALID_PARAMETERS),
    "InvalidS3ObjectException": (400, MESSAGE_S3_METADATA),
    "ProvisionedThroughputExceededException": (400, "Provisioned Rate exceeded."),
    "ThrottlingException": (400, MESSAGE_RATE_EXCEEDED),
}


class RekognitionError(Exception):
    """An error answer: the JSON 1.1 ``__type`` code, its message and its HTTP status."""

    def __init__(self, code: str, message: str | None = None, status: int | None = None) -> None:
        default_status, default_message = ERROR_DEFAULTS.get(code, (400, code))
        self.code = code
        self.message = default_message if message is None else message
        self.status = default_status if status is None else status
        super().__init__(f"{self.code}: {self.message}")

    def to_body(self) -> dict[str, str]:
        """The error body in the shape Rekognition sends (error-handling.html sample)."""
        return {"__type": self.code, "Code": self.code, "Logref": str(uuid.uuid4()), "Message": self.message}


@dataclass(frozen=True)
class ImageInput:
    """What a request asks about: an S3 object version, or inline bytes."""

    bucket: str | None = None
    key: str | None = None
    version: str | None = None
    data: bytes | None = None


# --- pure request/response logic -------------------------------------------------------------


def validate_rules(rules: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Check label rules and return normalised copies; raise ValueError naming the bad rule.

    A rule is ``{"sha256": hex, "labels": [...]}`` or ``{"key_glob": pattern, "labels": [...]}``;
    each label needs ``Name`` and a numeric ``Confidence``; ``ParentName`` defaults to "" as the
    real API sends it for top-level labels.
    """
    if not isinstance(rules, (list, tuple)):
        raise ValueError("rules must be a list of {'sha256'|'key_glob': ..., 'labels': [...]}")
    return [_validate_rule(index, rule) for index, rule in enumerate(rules)]


def _validate_rule(index: int, rule: Any) -> dict[str, Any]:
    """Validate and normalise one rule (see validate_rules)."""
    if not isinstance(rule, dict):
        raise ValueError(f"rule {index} is not an object")
    matchers = [name for name in ("sha256", "key_glob") if name in rule]
    if len(matchers) != 1 or not isinstance(rule[matchers[0]], str):
        raise ValueError(f"rule {index} needs exactly one of 'sha256' or 'key_glob' (a string)")
    labels = rule.get("labels")
    if not isinstance(labels, list):
        raise ValueError(f"rule {index} needs a 'labels' list")
    matcher = matchers[0]
    value = rule[matcher].lower() if matcher == "sha256" else rule[matcher]
    return {matcher: value, "labels": [_validate_label(index, label) for label in labels]}


def _validate_label(index: int, label: Any) -> dict[str, Any]:
    """Validate one Rekognition-shaped label of rule ``index``."""
    if not isinstance(label, dict) or not isinstance(label.get("Name"), str):
        raise ValueError(f"rule {index}: every label needs a string 'Name'")
    if not _is_number(label.get("Confidence")):
        raise ValueError(f"rule {index}: label {label['Name']!r} needs a numeric 'Confidence'")
    return {"ParentName": "", **label, "Confidence": float(label["Confidence"])}


def match_labels(rules: Sequence[dict[str, Any]], key: str | None, digest: str) -> list[dict[str, Any]]:
    """Labels of the first rule matching the object's sha256 or key; [] when none matches."""
    for rule in rules:
        if rule.get("sha256") == digest:
            return list(rule["labels"])
        if key is not None and "key_glob" in rule and fnmatch.fnmatchcase(key, rule["key_glob"]):
            return list(rule["labels"])
    return []


def filter_by_confidence(labels: Sequence[dict[str, Any]], min_confidence: float) -> list[dict[str, Any]]:
    """Drop labels below MinConfidence, as the API does ("doesn't return any labels lower")."""
    return [dict(label) for label in labels if label["Confidence"] >= min_confidence]


def build_response(labels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The DetectModerationLabelsResponse shape (service model)."""
    return {"ModerationLabels": list(labels), "ModerationModelVersion": MODERATION_MODEL_VERSION, "ContentTypes": []}


def parse_min_confidence(request: dict[str, Any]) -> float:
    """MinConfidence as a float in 0-100 (service model ``Percent``); default 50."""
    value = request.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)
    if not _is_number(value) or not 0 <= value <= 100:
        raise RekognitionError("InvalidParameterException")
    return float(value)


def parse_image(request: dict[str, Any]) -> ImageInput:
    """The required ``Image`` member: exactly one of ``S3Object`` or base64 ``Bytes``."""
    image = request.get("Image")
    if not isinstance(image, dict) or ("S3Object" in image) == ("Bytes" in image):
        raise RekognitionError("InvalidParameterException")
    if "Bytes" in image:
        return ImageInput(data=_decode_bytes(image["Bytes"]))
    s3_object = image["S3Object"]
    if not isinstance(s3_object, dict):
        raise RekognitionError("InvalidS3ObjectException", MESSAGE_S3_INVALID)
    bucket, key, version = s3_object.get("Bucket"), s3_object.get("Name"), s3_object.get("Version")
    if not _is_nonempty_str(bucket) or not _is_nonempty_str(key) or not (version is None or _is_nonempty_str(version)):
        raise RekognitionError("InvalidS3ObjectException", MESSAGE_S3_INVALID)
    return ImageInput(bucket=bucket, key=key, version=version)


def _decode_bytes(value: Any) -> bytes:
    """Decode ``Image.Bytes`` (base64 on the wire; 1 byte to 5 MB per the service model)."""
    try:
        data = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except binascii.Error:
        data = b""
    if not data:
        raise RekognitionError("InvalidParameterException")
    if len(data) > MAX_BYTES_IMAGE:
        raise RekognitionError("ImageTooLargeException")
    return data


def check_image(data: bytes) -> None:
    """Raise the error Rekognition gives for bytes it cannot analyse; return None if they are fine.

    Not JPEG/PNG, undecodable or truncated -> InvalidImageFormatException. Under 80 px in width or
    height -> InvalidParameterException: limits.html gives the 80 px minimum without naming the
    error; boto/botocore#1366 reports an S3 image under 80 px answered with InvalidParameterException
    ("Request has Invalid Parameters"). Over 10K px -> InvalidParameterException too, with the
    message awsdocs/aws-doc-sdk-examples#4848 quotes from the service; that issue does not show the
    code, so the code here is inferred from the minimum-size case.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in SUPPORTED_FORMATS:
                raise RekognitionError("InvalidImageFormatException")
            width, height = image.size
            if max(width, height) > MAX_IMAGE_DIMENSION:
                raise RekognitionError("InvalidParameterException", _too_big_message(width, height))
            image.load()  # decodes every byte: a truncated file raises OSError here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise RekognitionError("InvalidImageFormatException") from None
    if min(width, height) < MIN_IMAGE_DIMENSION:
        raise RekognitionError("InvalidParameterException")


def _too_big_message(width: int, height: int) -> str:
    """The over-10K message as quoted in awsdocs/aws-doc-sdk-examples#4848."""
    return f"Input image dimensions {width} x {height} exceed maximum dimension size of {MAX_IMAGE_DIMENSION} pixels"


def _is_number(value: Any) -> bool:
    """True for JSON numbers (bool excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_nonempty_str(value: Any) -> bool:
    """True for a non-empty string."""
    return isinstance(value, str) and value != ""


# --- fault injection and counters ------------------------------------------------------------


class SlidingWindowQuota:
    """Admit at most ``quota`` calls in any 1-second window; not thread-safe (callers lock).

    A fractional quota rounds down (2.5 admits 2 a second); 0 throttles everything; None admits
    everything. Throttled calls do not count against the window, as with a real TPS limit.
    """

    def __init__(self, quota: float | None) -> None:
        self.quota = quota
        self._admitted: collections.deque[float] = collections.deque()

    def admit(self, now: float) -> bool:
        """Record and admit a call at ``now`` if the window has room; else return False."""
        while self._admitted and self._admitted[0] <= now - QUOTA_WINDOW_SECONDS:
            self._admitted.popleft()
        if self.quota is not None and len(self._admitted) + 1 > self.quota:
            return False
        self._admitted.append(now)
        return True

    def clear(self) -> None:
        """Forget the calls admitted so far."""
        self._admitted.clear()


def validate_quota(quota: Any) -> float | None:
    """A quota is None (unlimited) or a number >= 0; raise ValueError otherwise."""
    if quota is not None and (not _is_number(quota) or quota < 0):
        raise ValueError(f"quota_per_second must be null or a number >= 0, not {quota!r}")
    return None if quota is None else float(quota)


def validate_latency(latency_s: Any) -> float:
    """A latency is a number of seconds >= 0; raise ValueError otherwise."""
    if not _is_number(latency_s) or latency_s < 0:
        raise ValueError(f"latency_s must be a number >= 0, not {latency_s!r}")
    return float(latency_s)


class Counters:
    """Call counters for ``/_standin/stats``; not thread-safe (callers lock)."""

    def __init__(self) -> None:
        self.calls = 0
        self.throttled = 0
        self.errors_by_code: collections.Counter[str] = collections.Counter()
        self.accepted_timestamps: collections.deque[float] = collections.deque(maxlen=MAX_ACCEPTED_TIMESTAMPS)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy of the counters."""
        return {
            "calls": self.calls,
            "throttled": self.throttled,
            "errors_by_code": dict(self.errors_by_code),
            "accepted_timestamps": list(self.accepted_timestamps),
        }


# --- the stand-in ----------------------------------------------------------------------------


class RekognitionStandIn:
    """The stand-in server: DetectModerationLabels from configured rules, with fault injection.

    ``with RekognitionStandIn(s3_endpoint_url=url, rules=[...]) as standin:`` serves on
    ``standin.endpoint_url`` from a daemon thread. ``port=0`` picks a free port; only loopback
    addresses are accepted for ``host``. ``s3_client`` wins over ``s3_endpoint_url``; without
    either, boto3 resolves S3 itself. ``clock`` (epoch seconds) is injectable so tests can drive
    the quota window deterministically.

    Counters: ``calls`` counts every API request (any target); ``throttled`` the quota rejections;
    ``errors_by_code`` every error answer by code (throttles included); ``accepted_timestamps`` the
    clock time of every call the quota admitted (the last 100k).
    """

    def __init__(
        self,
        *,
        s3_endpoint_url: str | None = None,
        rules: Sequence[dict[str, Any]] = (),
        host: str = "127.0.0.1",
        port: int = 0,
        quota_per_second: float | None = None,
        latency_s: float = 0.0,
        s3_client: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _require_loopback(host)
        self._host, self._port = host, port
        self._rules = validate_rules(list(rules))
        self._quota = SlidingWindowQuota(validate_quota(quota_per_second))
        self._latency_s = validate_latency(latency_s)
        self._s3 = s3_client if s3_client is not None else build_s3_client(s3_endpoint_url)
        self._clock = clock
        self._lock = threading.Lock()
        self._counters = Counters()
        self._failures: collections.deque[RekognitionError] = collections.deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> "RekognitionStandIn":
        """Bind and serve from a daemon thread; return self."""
        if self._server is not None:
            raise RuntimeError("stand-in already started")
        self._server = _StandInHTTPServer((self._host, self._port), _Handler, self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="rekognition-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> "RekognitionStandIn":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the running server (the value for AWS_ENDPOINT_URL_REKOGNITION)."""
        if self._server is None:
            raise RuntimeError("stand-in not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # configuration at run time

    def set_rules(self, rules: Sequence[dict[str, Any]]) -> None:
        """Replace the label rules (first match wins); raise ValueError for a malformed rule."""
        validated = validate_rules(rules)
        with self._lock:
            self._rules = validated

    def set_quota(self, quota_per_second: float | None) -> None:
        """Change the calls-per-second quota; None removes it."""
        quota = validate_quota(quota_per_second)
        with self._lock:
            self._quota.quota = quota

    def set_latency(self, latency_s: float) -> None:
        """Change the delay added to every API call."""
        latency = validate_latency(latency_s)
        with self._lock:
            self._latency_s = latency

    def fail_next(self, n: int, code: str, *, message: str | None = None, status: int | None = None) -> None:
        """Make the next ``n`` calls the quota admits answer ``code``.

        Status and message default to Rekognition's for that code (InternalServerError -> 500,
        others -> 400; see ERROR_DEFAULTS); pass ``status=500`` for the 5xx ThrottlingException.
        """
        if not isinstance(n, int) or n < 0 or not _is_nonempty_str(code):
            raise ValueError("fail_next needs n >= 0 and an error code")
        error = RekognitionError(code, message, status)
        with self._lock:
            self._failures.extend([error] * n)

    def stats(self) -> dict[str, Any]:
        """Counters plus the current quota and latency (the body of ``GET /_standin/stats``)."""
        with self._lock:
            snapshot = self._counters.snapshot()
            snapshot.update(quota_per_second=self._quota.quota, latency_s=self._latency_s,
                            pending_failures=len(self._failures))
        return snapshot

    def reset(self) -> None:
        """Zero the counters and forget the quota window and pending injected failures.

        Rules, quota and latency stay as configured.
        """
        with self._lock:
            self._counters = Counters()
            self._quota.clear()
            self._failures.clear()

    # the API

    def handle_api_call(self, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer one JSON 1.1 request: (HTTP status, JSON body). Errors become error bodies."""
        try:
            return 200, self._call(target, body)
        except RekognitionError as error:
            with self._lock:
                self._counters.errors_by_code[error.code] += 1
            return error.status, error.to_body()

    def _call(self, target: str, body: bytes) -> dict[str, Any]:
        """Run the gates of one call, then the operation; raise RekognitionError to refuse."""
        with self._lock:
            self._counters.calls += 1
            latency = self._latency_s
        if target != f"{TARGET_PREFIX}.{OPERATION}":
            raise RekognitionError("UnknownOperationException", f"Unknown operation {target or '(none)'}")
        if latency:
            time.sleep(latency)
        self._admit()
        return self.detect_moderation_labels(_parse_json_body(body))

    def _admit(self) -> None:
        """Apply the quota, then any injected failure."""
        with self._lock:
            now = self._clock()
            if not self._quota.admit(now):
                self._counters.throttled += 1
                raise RekognitionError("ThrottlingException")
            self._counters.accepted_timestamps.append(now)
            if self._failures:
                raise self._failures.popleft()

    def detect_moderation_labels(self, request: dict[str, Any]) -> dict[str, Any]:
        """The operation itself, without fault injection: request dict in, response dict out."""
        min_confidence = parse_min_confidence(request)
        image = parse_image(request)
        data = image.data if image.data is not None else self._read_s3_object(image)
        check_image(data)
        with self._lock:
            rules = self._rules
        labels = match_labels(rules, image.key, hashlib.sha256(data).hexdigest())
        return build_response(filter_by_confidence(labels, min_confidence))

    def _read_s3_object(self, image: ImageInput) -> bytes:
        """GetObject (the version when given); any S3 refusal is InvalidS3ObjectException."""
        params = {"Bucket": image.bucket, "Key": image.key}
        if image.version is not None:
            params["VersionId"] = image.version
        try:
            response = self._s3.get_object(**params)
        except ClientError:
            raise RekognitionError("InvalidS3ObjectException") from None
        except BotoCoreError as error:  # S3 unreachable: the test set-up is broken, say so
            raise RekognitionError("InternalServerError", f"stand-in could not reach S3: {error}") from None
        with response["Body"] as stream:
            if response["ContentLength"] > MAX_S3_IMAGE_BYTES:
                raise RekognitionError("ImageTooLargeException")
            return stream.read()

    # control endpoints

    def handle_control(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer a ``/_standin/...`` request: (HTTP status, JSON body)."""
        if method == "GET" and path == CONTROL_PREFIX + "stats":
            return 200, self.stats()
        action = _CONTROL_ACTIONS.get(path) if method == "POST" else None
        if action is None:
            return 404, {"error": f"no such stand-in endpoint: {method} {path}"}
        try:
            action(self, json.loads(body or b"null"))
        except (ValueError, TypeError, KeyError) as error:
            return 400, {"error": str(error)}
        return 200, {"ok": True}


def _set_quota_from_json(standin: RekognitionStandIn, payload: Any) -> None:
    """``POST /_standin/quota`` body: {"quota_per_second": Q|null}."""
    standin.set_quota(payload["quota_per_second"])


def _set_latency_from_json(standin: RekognitionStandIn, payload: Any) -> None:
    """``POST /_standin/latency`` body: {"latency_s": S}."""
    standin.set_latency(payload["latency_s"])


def _fail_next_from_json(standin: RekognitionStandIn, payload: Any) -> None:
    """``POST /_standin/fail_next`` body: {"n": N, "code": C, "message"?: M, "status"?: S}."""
    standin.fail_next(payload["n"], payload["code"], message=payload.get("message"), status=payload.get("status"))


_CONTROL_ACTIONS: dict[str, Callable[[RekognitionStandIn, Any], None]] = {
    CONTROL_PREFIX + "rules": lambda standin, payload: standin.set_rules(payload),
    CONTROL_PREFIX + "quota": _set_quota_from_json,
    CONTROL_PREFIX + "latency": _set_latency_from_json,
    CONTROL_PREFIX + "fail_next": _fail_next_from_json,
    CONTROL_PREFIX + "reset": lambda standin, payload: standin.reset(),
}


def _parse_json_body(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; SerializationException (the JSON protocol's) otherwise."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        raise RekognitionError("SerializationException", "Request body is not valid JSON") from None
    if not isinstance(request, dict):
        raise RekognitionError("SerializationException", "Request body must be a JSON object")
    return request


def _require_loopback(host: str) -> None:
    """Refuse to bind anywhere but IPv4 loopback: this server has no authentication."""
    try:
        loopback = ipaddress.IPv4Address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ValueError(f"the stand-in binds only to loopback, not {host!r}")


def build_s3_client(endpoint_url: str | None) -> Any:
    """An S3 client with boto3's own configuration, falling back to us-east-1 and dummy creds.

    The EC2 instance-metadata credential provider is left out so that a machine with no
    credentials falls back at once instead of waiting on 169.254.169.254.
    """
    core_session = botocore.session.Session()
    core_session.get_component("credential_provider").remove("iam-role")
    session = boto3.session.Session(botocore_session=core_session)
    credentials = {}
    if session.get_credentials() is None:
        credentials = {"aws_access_key_id": DUMMY_CREDENTIAL, "aws_secret_access_key": DUMMY_CREDENTIAL}
    config = Config(max_pool_connections=S3_POOL_SIZE, retries={"mode": "standard"})
    return session.client("s3", endpoint_url=endpoint_url, region_name=session.region_name or DEFAULT_REGION,
                          config=config, **credentials)


# --- HTTP plumbing ---------------------------------------------------------------------------


class _StandInHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its stand-in."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type, standin: RekognitionStandIn) -> None:
        self.standin = standin
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer (a worker killed by a fault test) is not an error here."""
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes ``POST /`` to the API and ``/_standin/*`` to the control endpoints."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoint; every answer has a length
    timeout = IDLE_CONNECTION_TIMEOUT_S
    server: _StandInHTTPServer

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        """API calls and control actions."""
        body = self._read_body()
        if self.path.startswith(CONTROL_PREFIX):
            self._send_json(*self.server.standin.handle_control("POST", self.path, body))
            return
        target = self.headers.get("X-Amz-Target", "") if self.path == "/" else f"(path {self.path})"
        status, payload = self.server.standin.handle_api_call(target, body)
        error_code = payload.get("__type") if status >= 400 else None
        self._send_json(status, payload, content_type=JSON_CONTENT_TYPE, error_code=error_code)

    def do_GET(self) -> None:  # noqa: N802
        """``GET /_standin/stats``."""
        self._send_json(*self.server.standin.handle_control("GET", self.path, b""))

    def _read_body(self) -> bytes:
        """The request body (botocore always sends Content-Length)."""
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, payload: dict[str, Any], *, content_type: str = "application/json",
                   error_code: str | None = None) -> None:
        """Write one JSON answer with the headers botocore reads."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_code:
            self.send_header("x-amzn-ErrorType", error_code)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature is http.server's)
        """Access log to logging at DEBUG instead of stderr."""
        log.debug("%s %s", self.address_string(), format % args)


# --- command line ----------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options of ``python -m tests.standins.rekognition``."""
    parser = argparse.ArgumentParser(prog="python -m tests.standins.rekognition", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 picks a free one)")
    parser.add_argument("--s3-endpoint", required=True, help="S3 endpoint URL to read objects from")
    parser.add_argument("--rules", help="JSON file with the list of label rules")
    parser.add_argument("--quota", type=float, default=None, help="calls per second before ThrottlingException")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every call")
    return parser.parse_args(argv)


def load_rules(path: str | None) -> list[dict[str, Any]]:
    """Rules from a JSON file, or none."""
    if path is None:
        return []
    with open(path, encoding="utf-8") as handle:
        return validate_rules(json.load(handle))


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then shut down cleanly and return 0."""
    args = parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    standin = RekognitionStandIn(s3_endpoint_url=args.s3_endpoint, rules=load_rules(args.rules), port=args.port,
                                 quota_per_second=args.quota, latency_s=args.latency)
    with standin:
        print(f"listening on {standin.endpoint_url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
