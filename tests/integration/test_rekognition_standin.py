"""The Rekognition stand-in, driven the way the product drives Rekognition: a real boto3 client.

A moto server holds the S3 objects; the stand-in reads them over HTTP like Rekognition reads S3.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from PIL import Image

from pipeline.local.processes import free_port
from tests.conftest import AWS_TEST_ENV, AWS_TEST_REGION, aws_client
from tests.standins.rekognition import (
    MAX_S3_IMAGE_BYTES,
    MESSAGE_INVALID_FORMAT,
    MESSAGE_INVALID_PARAMETERS,
    MESSAGE_S3_METADATA,
    MESSAGE_TOO_LARGE,
    RekognitionStandIn,
    build_s3_client,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REGION = AWS_TEST_REGION
DUMMY = AWS_TEST_ENV["AWS_ACCESS_KEY_ID"]
START_TIME = 1_700_000_000.0

PNG_KEY = "content/images/photo.png"
UNSAFE_KEY = "content/images/unsafe-0001.jpg"
CLEAN_KEY = "content/images/clean.png"
TEXT_KEY = "content/docs/readme.txt"
TRUNCATED_KEY = "content/images/truncated.jpg"
TINY_KEY = "content/images/tiny.png"
THIN_KEY = "content/images/thin.png"

EXPLICIT = [
    {"Name": "Explicit", "ParentName": "", "Confidence": 97.5, "TaxonomyLevel": 1},
    {"Name": "Explicit Nudity", "ParentName": "Explicit", "Confidence": 91.25, "TaxonomyLevel": 2},
]
VIOLENCE = [
    {"Name": "Violence", "ParentName": "", "Confidence": 92.0, "TaxonomyLevel": 1},
    {"Name": "Weapons", "ParentName": "Violence", "Confidence": 80.0, "TaxonomyLevel": 2},
    {"Name": "Graphic Violence", "ParentName": "Violence", "Confidence": 79.9, "TaxonomyLevel": 2},
]
ALCOHOL = [
    {"Name": "Alcohol", "ParentName": "", "Confidence": 60.0, "TaxonomyLevel": 1},
    {"Name": "Alcoholic Beverages", "ParentName": "Alcohol", "Confidence": 49.9, "TaxonomyLevel": 2},
]


# --- helpers ---------------------------------------------------------------------------------


def png_bytes(size: tuple[int, int], color: str = "red") -> bytes:
    """A real PNG of ``size``."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_jpeg_bytes(size: tuple[int, int] = (100, 100), seed: int = 7) -> bytes:
    """A real JPEG full of noise, so that cutting it loses image data."""
    pixels = random.Random(seed).randbytes(size[0] * size[1] * 3)
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    """Hex sha256, the value a sha256 rule matches."""
    return hashlib.sha256(data).hexdigest()


#: One attempt per call. botocore's ``max_attempts`` counts *retries* (max_attempts=1 is two attempts);
#: ``total_max_attempts`` counts attempts.
ONE_ATTEMPT = {"mode": "standard", "total_max_attempts": 1}


def rekognition_client(endpoint_url: str, *, validate: bool = True) -> Any:
    """A real boto3 Rekognition client on the stand-in, one attempt per call."""
    return aws_client("rekognition", endpoint_url, Config(retries=ONE_ATTEMPT, parameter_validation=validate))


def s3_image(bucket: str, key: str, version: str | None = None) -> dict[str, Any]:
    """The ``Image`` argument for an S3 object, as the product builds it."""
    s3_object = {"Bucket": bucket, "Name": key}
    if version is not None:
        s3_object["Version"] = version
    return {"S3Object": s3_object}


def error_of(call: Any, **kwargs: Any) -> ClientError:
    """The ClientError a call raises (fails the test if it succeeds)."""
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return raised.value


def raw_call(endpoint_url: str, body: bytes, target: str = "RekognitionService.DetectModerationLabels") -> tuple[int, Any, dict[str, Any]]:
    """POST a raw JSON 1.1 request, as botocore would send it: (status, headers, decoded body)."""
    host, port = endpoint_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request("POST", "/", body=body, headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


def http_json(url: str, payload: Any = None) -> tuple[int, Any]:
    """GET (payload None) or POST JSON to a control endpoint; (status, decoded body)."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class FakeClock:
    """Epoch seconds that move only when the test says so."""

    def __init__(self, now: float = START_TIME) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- fixtures --------------------------------------------------------------------------------


# moto_endpoint (a moto server for the whole session), s3 and bucket (one of this test's own)
# come from tests/conftest.py.


@pytest.fixture
def objects(s3: Any, bucket: str) -> dict[str, bytes]:
    """The test objects, uploaded: key -> bytes."""
    full_jpeg = noisy_jpeg_bytes(seed=11)
    contents = {
        PNG_KEY: png_bytes((120, 100), "red"),
        UNSAFE_KEY: noisy_jpeg_bytes(),
        CLEAN_KEY: png_bytes((100, 100), "green"),
        TEXT_KEY: b"this is not an image\n",
        TRUNCATED_KEY: full_jpeg[: len(full_jpeg) // 2],
        TINY_KEY: png_bytes((50, 50), "blue"),
        THIN_KEY: png_bytes((200, 60), "blue"),
    }
    for key, body in contents.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return contents


@pytest.fixture
def clock() -> FakeClock:
    """The stand-in's clock, so the quota window is driven by the test, not by wall time."""
    return FakeClock()


@pytest.fixture
def standin(moto_endpoint: str, clock: FakeClock) -> Iterator[RekognitionStandIn]:
    """A running stand-in reading from the moto server."""
    with RekognitionStandIn(s3_endpoint_url=moto_endpoint, clock=clock) as running:
        yield running


@pytest.fixture
def rekognition(standin: RekognitionStandIn) -> Any:
    """A boto3 Rekognition client on the stand-in."""
    return rekognition_client(standin.endpoint_url)


# --- labels from rules -----------------------------------------------------------------------


def test_sha256_rule_returns_configured_labels(standin, rekognition, bucket, objects):
    # Given
    standin.set_rules([{"sha256": sha256(objects[PNG_KEY]), "labels": EXPLICIT}])
    # When
    response = rekognition.detect_moderation_labels(Image=s3_image(bucket, PNG_KEY), MinConfidence=80)
    # Then
    assert response["ModerationLabels"] == EXPLICIT
    assert response["ModerationModelVersion"] == "7.0"
    assert response["ContentTypes"] == []


def test_key_glob_rule_returns_configured_labels(standin, rekognition, bucket, objects):
    standin.set_rules([{"key_glob": "content/images/unsafe-*", "labels": VIOLENCE[:1]}])

    unsafe = rekognition.detect_moderation_labels(Image=s3_image(bucket, UNSAFE_KEY), MinConfidence=80)
    other = rekognition.detect_moderation_labels(Image=s3_image(bucket, PNG_KEY), MinConfidence=80)

    assert unsafe["ModerationLabels"] == VIOLENCE[:1]
    assert other["ModerationLabels"] == []


def test_first_matching_rule_wins(standin, rekognition, bucket, objects):
    standin.set_rules([
        {"key_glob": "content/images/*", "labels": VIOLENCE[:1]},
        {"sha256": sha256(objects[PNG_KEY]), "labels": EXPLICIT},
    ])

    response = rekognition.detect_moderation_labels(Image=s3_image(bucket, PNG_KEY))

    assert response["ModerationLabels"] == VIOLENCE[:1]


def test_labels_without_parent_name_get_an_empty_one(standin, rekognition, bucket, objects):
    standin.set_rules([{"key_glob": PNG_KEY, "labels": [{"Name": "Violence", "Confidence": 90}]}])

    response = rekognition.detect_moderation_labels(Image=s3_image(bucket, PNG_KEY))

    assert response["ModerationLabels"] == [{"Name": "Violence", "ParentName": "", "Confidence": 90.0}]


def test_min_confidence_drops_lower_labels_and_keeps_equal_ones(standin, rekognition, bucket, objects):
    standin.set_rules([{"key_glob": UNSAFE_KEY, "labels": VIOLENCE}])

    response = rekognition.detect_moderation_labels(Image=s3_image(bucket, UNSAFE_KEY), MinConfidence=80)

    assert [label["Name"] for label in response["ModerationLabels"]] == ["Violence", "Weapons"]


@pytest.mark.parametrize(("min_confidence", "expected"), [
    (None, ["Alcohol"]),  # the API's default is 50
    (0, ["Alcohol", "Alcoholic Beverages"]),
    (60, ["Alcohol"]),
    (100, []),
])
def test_min_confidence_default_and_bounds(standin, rekognition, bucket, objects, min_confidence, expected):
    standin.set_rules([{"key_glob": CLEAN_KEY, "labels": ALCOHOL}])
    kwargs = {} if min_confidence is None else {"MinConfidence": min_confidence}

    response = rekognition.detect_moderation_labels(Image=s3_image(bucket, CLEAN_KEY), **kwargs)

    assert [label["Name"] for label in response["ModerationLabels"]] == expected


def test_no_matching_rule_gives_empty_labels_and_model_version(standin, rekognition, bucket, objects):
    standin.set_rules([{"sha256": "0" * 64, "labels": EXPLICIT}, {"key_glob": "elsewhere/*", "labels": VIOLENCE}])

    response = rekognition.detect_moderation_labels(Image=s3_image(bucket, CLEAN_KEY), MinConfidence=80)

    assert response["ModerationLabels"] == []
    assert response["ModerationModelVersion"] == "7.0"
    assert response["ContentTypes"] == []


def test_inline_bytes_are_matched_by_sha256(standin, rekognition, objects):
    standin.set_rules([{"sha256": sha256(objects[PNG_KEY]), "labels": EXPLICIT}])

    response = rekognition.detect_moderation_labels(Image={"Bytes": objects[PNG_KEY]})

    assert response["ModerationLabels"] == EXPLICIT


def test_rules_given_to_the_constructor_apply(moto_endpoint, bucket, objects):
    rules = [{"key_glob": "content/images/unsafe-*", "labels": VIOLENCE}]
    with RekognitionStandIn(s3_endpoint_url=moto_endpoint, rules=rules) as running:
        response = rekognition_client(running.endpoint_url).detect_moderation_labels(
            Image=s3_image(bucket, UNSAFE_KEY), MinConfidence=80)

    assert [label["Name"] for label in response["ModerationLabels"]] == ["Violence", "Weapons"]


def test_plain_boto3_client_finds_the_standin_through_the_environment(monkeypatch, standin, bucket, objects):
    # Given: the product's own configuration path, nothing but environment variables
    standin.set_rules([{"key_glob": "content/images/unsafe-*", "labels": VIOLENCE}])
    monkeypatch.setenv("AWS_ENDPOINT_URL_REKOGNITION", standin.endpoint_url)
    monkeypatch.delenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)  # botocore's region variable (it ignores AWS_REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", DUMMY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY)
    client = boto3.session.Session().client("rekognition", config=Config(retries=ONE_ATTEMPT))
    # When
    response = client.detect_moderation_labels(Image=s3_image(bucket, UNSAFE_KEY), MinConfidence=80)
    # Then
    assert [label["Name"] for label in response["ModerationLabels"]] == ["Violence", "Weapons"]
    assert standin.stats()["calls"] == 1


# --- the errors Rekognition returns ----------------------------------------------------------


@pytest.mark.parametrize(("key", "code", "message"), [
    ("content/images/missing.png", "InvalidS3ObjectException", MESSAGE_S3_METADATA),
    (TEXT_KEY, "InvalidImageFormatException", MESSAGE_INVALID_FORMAT),
    (TRUNCATED_KEY, "InvalidImageFormatException", MESSAGE_INVALID_FORMAT),
    (TINY_KEY, "InvalidParameterException", MESSAGE_INVALID_PARAMETERS),
    (THIN_KEY, "InvalidParameterException", MESSAGE_INVALID_PARAMETERS),
])
def test_object_errors_have_rekognition_codes(rekognition, bucket, objects, key, code, message):
    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, key), MinConfidence=80)

    assert error.response["Error"] == {"Code": code, "Message": message}
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_missing_bucket_is_invalid_s3_object(rekognition):
    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(f"absent-{uuid.uuid4().hex}", PNG_KEY))

    assert error.response["Error"]["Code"] == "InvalidS3ObjectException"


def test_image_formats_other_than_jpeg_and_png_are_invalid(s3, rekognition, bucket):
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), "red").save(buffer, "GIF")
    s3.put_object(Bucket=bucket, Key="content/images/anim.gif", Body=buffer.getvalue())

    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, "content/images/anim.gif"))

    assert error.response["Error"]["Code"] == "InvalidImageFormatException"


@pytest.mark.parametrize(("size", "code"), [
    (MAX_S3_IMAGE_BYTES + 1, "ImageTooLargeException"),
    (MAX_S3_IMAGE_BYTES, "InvalidImageFormatException"),  # at the limit: read, then found not an image
])
def test_objects_over_15_mb_are_too_large(s3, rekognition, bucket, size, code):
    s3.put_object(Bucket=bucket, Key="content/images/huge.jpg", Body=bytes(size))

    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, "content/images/huge.jpg"))

    assert error.response["Error"]["Code"] == code
    if code == "ImageTooLargeException":
        assert error.response["Error"]["Message"] == MESSAGE_TOO_LARGE


def test_images_over_10k_pixels_are_invalid_parameters(s3, rekognition, bucket):
    buffer = io.BytesIO()
    Image.new("L", (10_001, 80)).save(buffer, "PNG")
    s3.put_object(Bucket=bucket, Key="content/images/banner.png", Body=buffer.getvalue())

    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, "content/images/banner.png"))

    assert error.response["Error"] == {
        "Code": "InvalidParameterException",
        "Message": "Input image dimensions 10001 x 80 exceed maximum dimension size of 10000 pixels",
    }


@pytest.mark.parametrize("kwargs", [
    {},  # no Image
    {"Image": {}},  # neither S3Object nor Bytes
    {"Image": {"S3Object": {"Bucket": "b", "Name": "k"}}, "MinConfidence": -1},
    {"Image": {"S3Object": {"Bucket": "b", "Name": "k"}}, "MinConfidence": 100.5},
], ids=["no-image", "empty-image", "min-confidence-negative", "min-confidence-over-100"])
def test_bad_parameters_are_invalid_parameter_exception(standin, kwargs):
    # botocore would refuse most of these before sending; the stand-in must refuse them too
    client = rekognition_client(standin.endpoint_url, validate=False)

    error = error_of(client.detect_moderation_labels, **kwargs)

    assert error.response["Error"] == {"Code": "InvalidParameterException", "Message": MESSAGE_INVALID_PARAMETERS}


@pytest.mark.parametrize("body", [
    {"Image": {"S3Object": {"Bucket": "b", "Name": "k"}}, "MinConfidence": "80"},
    {"Image": {"S3Object": {"Bucket": "b", "Name": "k"}}, "MinConfidence": True},
    {"Image": {"Bytes": "not base64!"}},
    {"Image": {"Bytes": ""}},
], ids=["min-confidence-string", "min-confidence-bool", "bytes-not-base64", "bytes-empty"])
def test_bad_values_botocore_cannot_send_are_invalid_parameter_exception(standin, body):
    status, _, payload = raw_call(standin.endpoint_url, json.dumps(body).encode())

    assert (status, payload["__type"], payload["Message"]) == (400, "InvalidParameterException", MESSAGE_INVALID_PARAMETERS)


def test_s3_object_without_name_is_invalid_s3_object(standin):
    client = rekognition_client(standin.endpoint_url, validate=False)

    error = error_of(client.detect_moderation_labels, Image={"S3Object": {"Bucket": "some-bucket"}})

    assert error.response["Error"] == {"Code": "InvalidS3ObjectException", "Message": "Request has invalid S3 object."}


def test_unknown_operation(rekognition, standin):
    error = error_of(rekognition.detect_labels, Image=s3_image("some-bucket", PNG_KEY))

    assert error.response["Error"]["Code"] == "UnknownOperationException"
    assert standin.stats()["errors_by_code"] == {"UnknownOperationException": 1}


def test_errors_are_json_1_1_on_the_wire(standin, bucket, objects):
    body = json.dumps({"Image": s3_image(bucket, "content/images/missing.png")}).encode()

    status, headers, payload = raw_call(standin.endpoint_url, body)

    assert status == 400
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["x-amzn-ErrorType"] == "InvalidS3ObjectException"
    assert headers["x-amzn-RequestId"]
    assert payload["__type"] == payload["Code"] == "InvalidS3ObjectException"
    assert payload["Message"] == MESSAGE_S3_METADATA
    assert payload["Logref"]


def test_malformed_json_body_is_a_serialization_exception(standin):
    status, _, payload = raw_call(standin.endpoint_url, b"{not json")

    assert (status, payload["__type"]) == (400, "SerializationException")


def test_missing_target_is_an_unknown_operation(standin):
    status, headers, payload = raw_call(standin.endpoint_url, b"{}", target="")

    assert (status, payload["__type"], headers["x-amzn-ErrorType"]) == (400, "UnknownOperationException", "UnknownOperationException")


# --- versions --------------------------------------------------------------------------------


def test_version_is_honoured_in_a_versioned_bucket(s3, standin, rekognition, bucket):
    # Given: two versions of one key, each with its own rule
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    first, second = png_bytes((100, 100), "red"), png_bytes((100, 100), "black")
    first_version = s3.put_object(Bucket=bucket, Key=PNG_KEY, Body=first)["VersionId"]
    s3.put_object(Bucket=bucket, Key=PNG_KEY, Body=second)
    standin.set_rules([{"sha256": sha256(first), "labels": EXPLICIT}, {"sha256": sha256(second), "labels": VIOLENCE[:1]}])
    # When
    old = rekognition.detect_moderation_labels(Image=s3_image(bucket, PNG_KEY, first_version))
    latest = rekognition.detect_moderation_labels(Image=s3_image(bucket, PNG_KEY))
    # Then
    assert old["ModerationLabels"] == EXPLICIT
    assert latest["ModerationLabels"] == VIOLENCE[:1]


def test_missing_version_is_invalid_s3_object(s3, rekognition, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key=PNG_KEY, Body=png_bytes((100, 100)))

    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, PNG_KEY, "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"))

    assert error.response["Error"] == {"Code": "InvalidS3ObjectException", "Message": MESSAGE_S3_METADATA}


# --- quota, latency, injected failures -------------------------------------------------------


def test_quota_throttles_exactly_the_calls_beyond_q_in_one_second(standin, rekognition, clock, bucket, objects):
    # Given
    standin.set_quota(3)
    image = s3_image(bucket, CLEAN_KEY)
    # When: five calls in the same instant
    outcomes = [_outcome(rekognition, image) for _ in range(5)]
    # Then
    assert outcomes == ["ok", "ok", "ok", "ThrottlingException", "ThrottlingException"]
    stats = standin.stats()
    assert stats["calls"] == 5
    assert stats["throttled"] == 2
    assert stats["errors_by_code"] == {"ThrottlingException": 2}
    assert stats["accepted_timestamps"] == [START_TIME] * 3


def test_quota_window_slides(standin, rekognition, clock, bucket, objects):
    standin.set_quota(2)
    image = s3_image(bucket, CLEAN_KEY)
    assert [_outcome(rekognition, image) for _ in range(2)] == ["ok", "ok"]

    clock.advance(0.5)
    assert _outcome(rekognition, image) == "ThrottlingException"  # both admitted calls still in the window

    clock.advance(0.5)  # one second after the first two: they leave the window
    assert [_outcome(rekognition, image) for _ in range(3)] == ["ok", "ok", "ThrottlingException"]
    assert standin.stats()["accepted_timestamps"] == [START_TIME, START_TIME, START_TIME + 1.0, START_TIME + 1.0]


def test_throttle_answer_is_rekognition_shaped(standin, rekognition, bucket, objects):
    standin.set_quota(0)

    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, CLEAN_KEY))

    assert error.response["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_quota_can_change_at_run_time(standin, rekognition, bucket, objects):
    image = s3_image(bucket, CLEAN_KEY)
    assert [_outcome(rekognition, image) for _ in range(4)] == ["ok"] * 4  # no quota yet

    standin.set_quota(5)  # the four calls above count: one more fits in this second
    assert [_outcome(rekognition, image) for _ in range(2)] == ["ok", "ThrottlingException"]

    standin.set_quota(None)
    assert _outcome(rekognition, image) == "ok"


def test_fail_next_fails_exactly_n_calls_with_internal_server_error(standin, rekognition, bucket, objects):
    standin.fail_next(2, "InternalServerError")
    image = s3_image(bucket, CLEAN_KEY)

    errors = [error_of(rekognition.detect_moderation_labels, Image=image) for _ in range(2)]
    after = rekognition.detect_moderation_labels(Image=image)

    assert [e.response["Error"] for e in errors] == [{"Code": "InternalServerError", "Message": "Internal server error"}] * 2
    assert [e.response["ResponseMetadata"]["HTTPStatusCode"] for e in errors] == [500, 500]
    assert after["ModerationLabels"] == []
    assert standin.stats()["errors_by_code"] == {"InternalServerError": 2}


@pytest.mark.parametrize(("code", "status", "expected_status", "expected_message"), [
    ("ProvisionedThroughputExceededException", None, 400, "Provisioned Rate exceeded."),
    ("ThrottlingException", 500, 500, "Rate exceeded"),  # the 5xx form the API reference lists
    ("AccessDeniedException", None, 400, "User is not authorized to perform: rekognition:DetectModerationLabels"),
])
def test_fail_next_with_other_codes(standin, rekognition, bucket, objects, code, status, expected_status, expected_message):
    standin.fail_next(1, code, status=status)

    error = error_of(rekognition.detect_moderation_labels, Image=s3_image(bucket, CLEAN_KEY))

    assert error.response["Error"] == {"Code": code, "Message": expected_message}
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == expected_status


def test_latency_is_added_to_each_call(standin, rekognition, bucket, objects):
    standin.set_latency(0.2)

    started = time.monotonic()
    rekognition.detect_moderation_labels(Image=s3_image(bucket, CLEAN_KEY))

    assert time.monotonic() - started >= 0.2  # a lower bound only: sleep never returns early
    assert standin.stats()["latency_s"] == 0.2


def test_reset_zeroes_counters_and_keeps_configuration(standin, rekognition, bucket, objects):
    standin.set_rules([{"key_glob": CLEAN_KEY, "labels": ALCOHOL}])
    standin.set_quota(1)
    image = s3_image(bucket, CLEAN_KEY)
    assert [_outcome(rekognition, image) for _ in range(2)] == ["ok", "ThrottlingException"]

    standin.reset()

    stats = standin.stats()
    assert (stats["calls"], stats["throttled"], stats["errors_by_code"], stats["accepted_timestamps"]) == (0, 0, {}, [])
    assert stats["quota_per_second"] == 1
    assert rekognition.detect_moderation_labels(Image=image)["ModerationLabels"] == ALCOHOL[:1]


def _outcome(client: Any, image: dict[str, Any]) -> str:
    """"ok" or the error code of one DetectModerationLabels call."""
    try:
        client.detect_moderation_labels(Image=image)
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "ok"


# --- control endpoints and configuration checks ----------------------------------------------


def test_http_control_endpoints(standin, rekognition, bucket, objects):
    base = standin.endpoint_url + "/_standin"

    assert http_json(base + "/rules", [{"key_glob": "content/images/unsafe-*", "labels": EXPLICIT}]) == (200, {"ok": True})
    assert rekognition.detect_moderation_labels(Image=s3_image(bucket, UNSAFE_KEY))["ModerationLabels"] == EXPLICIT

    assert http_json(base + "/quota", {"quota_per_second": 0}) == (200, {"ok": True})
    assert _outcome(rekognition, s3_image(bucket, UNSAFE_KEY)) == "ThrottlingException"
    assert http_json(base + "/quota", {"quota_per_second": None})[0] == 200

    assert http_json(base + "/fail_next", {"n": 1, "code": "InternalServerError"})[0] == 200
    assert _outcome(rekognition, s3_image(bucket, UNSAFE_KEY)) == "InternalServerError"

    status, stats = http_json(base + "/stats")
    assert status == 200
    assert (stats["calls"], stats["throttled"]) == (3, 1)
    assert stats["errors_by_code"] == {"ThrottlingException": 1, "InternalServerError": 1}
    assert len(stats["accepted_timestamps"]) == 2

    assert http_json(base + "/reset", {}) == (200, {"ok": True})
    assert http_json(base + "/stats")[1]["calls"] == 0


@pytest.mark.parametrize(("path", "payload"), [
    ("/rules", {"not": "a list"}),
    ("/rules", [{"labels": []}]),
    ("/rules", [{"sha256": "ab", "key_glob": "x", "labels": []}]),
    ("/rules", [{"key_glob": "x", "labels": [{"Name": "Violence"}]}]),
    ("/quota", {"quota_per_second": -1}),
    ("/quota", {}),
    ("/latency", {"latency_s": "slow"}),
])
def test_control_endpoints_refuse_bad_input(standin, path, payload):
    status, body = http_json(standin.endpoint_url + "/_standin" + path, payload)

    assert status == 400
    assert body["error"]


def test_binds_only_to_loopback(moto_endpoint):
    with pytest.raises(ValueError, match="loopback"):
        RekognitionStandIn(s3_endpoint_url=moto_endpoint, host="0.0.0.0")


def test_s3_client_works_with_no_aws_configuration(monkeypatch, tmp_path, moto_endpoint, bucket):
    # Given: a machine with no AWS environment or files at all
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    # When
    client = build_s3_client(moto_endpoint)
    # Then
    assert client.meta.region_name == "us-east-1"
    assert bucket in [entry["Name"] for entry in client.list_buckets()["Buckets"]]


# --- as a separate process -------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "fixed_port"), [(signal.SIGTERM, True), (signal.SIGINT, False)],
                         ids=["sigterm-fixed-port", "sigint-port-0"])
def test_subprocess_mode_starts_answers_and_stops(tmp_path, moto_endpoint, bucket, objects, signum, fixed_port):
    # Given: a rules file and an environment with no AWS settings
    rules_file = tmp_path / "rules.json"
    rules_file.write_text(json.dumps([{"sha256": sha256(objects[PNG_KEY]), "labels": EXPLICIT}]))
    port = free_port() if fixed_port else 0
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"))
    command = [sys.executable, "-m", "tests.standins.rekognition", "--port", str(port),
               "--s3-endpoint", moto_endpoint, "--rules", str(rules_file), "--quota", "50", "--latency", "0"]
    with open(tmp_path / "stderr.log", "w+") as stderr:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            # When
            line = _read_line(process, timeout_s=30)
            endpoint = line.removeprefix("listening on ")
            response = rekognition_client(endpoint).detect_moderation_labels(Image=s3_image(bucket, PNG_KEY), MinConfidence=80)
            stats = http_json(endpoint + "/_standin/stats")[1]
            process.send_signal(signum)
            returncode = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        stderr.seek(0)
        log = stderr.read()
    # Then
    assert re.fullmatch(r"listening on http://127\.0\.0\.1:\d+", line)
    if fixed_port:
        assert endpoint == f"http://127.0.0.1:{port}"
    assert response["ModerationLabels"] == EXPLICIT
    assert (stats["calls"], stats["quota_per_second"]) == (1, 50.0)
    assert returncode == 0, log


def _read_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The first stdout line of ``process``, failing the test if none comes in time."""
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    assert ready, f"no output within {timeout_s}s (exit code {process.poll()})"
    return process.stdout.readline().strip()
