"""The `local` detector with the real model: loaded from the installed package, offline, on real images.

These tests need the `model` extra (the test extra installs it): without it they skip locally and
fail under CI=true, like any missing service.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline import outcomes
from pipeline.decision import Policy, decide
from pipeline.demo.make_samples import HASHLIST_PATH, SAMPLES_DIR
from pipeline.detectors.base import ImageRef
from pipeline.detectors.combined import CombinedDetector
from pipeline.detectors.factory import build_detector
from pipeline.detectors.local_labels import CLASS_LABELS, IGNORED_CLASSES
from pipeline.errors import ConfigurationError, RetryableError, UnsupportedImageError
from pipeline.local.processes import free_port
from pipeline.settings import Settings
from tests.conftest import aws_client, service_missing

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ["meadow.jpg", "sunset.jpg", "tiles.png", "waves.jpg", "known-bad.jpg", "known-bad-copy.jpg"]
KEY = "content/images/upload.jpg"


def sample(name: str) -> bytes:
    return (SAMPLES_DIR / name).read_bytes()


@pytest.fixture(scope="module")
def model_path() -> Path:
    """The bundled model file, or a skip (a failure in CI) when the `model` extra is missing."""
    from pipeline.detectors.local_model import bundled_model_path

    try:
        return bundled_model_path()
    except ConfigurationError as exc:
        service_missing(str(exc))


@pytest.fixture(scope="module")
def local(model_path: Path) -> Any:
    """The local detector as the factory builds it, one thread, no S3 (bytes are given directly)."""
    from pipeline.detectors.factory import build_local

    return build_local(Settings(detectors=("local",), local_model_threads=1), s3_client=None)


def upload(s3: Any, bucket: str, data: bytes, key: str = KEY) -> ImageRef:
    response = s3.put_object(Bucket=bucket, Key=key, Body=data)
    return ImageRef(bucket, key, response.get("VersionId"), response["ETag"].strip('"'))


# --- the model file ------------------------------------------------------------------------------


def test_the_model_loads_from_the_installed_package(local: Any, model_path: Path) -> None:
    import nudenet  # noqa: F401  (only to find where pip put it)

    assert model_path == Path(sys.modules["nudenet"].__file__).parent / "320n.onnx"
    assert local.model.version.startswith("nudenet-3.4.2:320n:")
    assert local.model.version.endswith(local.model.digest[:12])
    assert local.model.session.get_providers() == ["CPUExecutionProvider"]


def test_every_class_of_the_model_file_is_mapped_or_ignored(local: Any) -> None:
    names = local.model.class_names
    assert len(names) == 18
    assert set(names) == set(CLASS_LABELS) | set(IGNORED_CLASSES)


def test_the_session_uses_the_configured_threads(model_path: Path) -> None:
    from pipeline.detectors.factory import build_local

    detector = build_local(Settings(detectors=("local",), local_model_threads=2), s3_client=None)
    options = detector.model.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)


def test_automatic_threads_divide_the_cpus_among_worker_processes(model_path: Path) -> None:
    from pipeline.detectors.local_model import usable_cpus

    settings = Settings(detectors=("local",))
    detector = build_detector(settings, client=lambda service: None, worker_processes=usable_cpus())
    assert detector.model.threads == 1
    alone = build_detector(settings, client=lambda service: None, worker_processes=None)
    assert alone.model.threads == usable_cpus()


# --- real images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_clean_samples_get_no_blocking_label(local: Any, name: str) -> None:
    detection = local.detect_bytes(sample(name))
    assert detection.detector == "local"
    assert decide(detection.labels, Policy()) == outcomes.CLEAN
    assert all(label.confidence < 80 for label in detection.labels)


def test_repeated_runs_give_the_same_output(local: Any) -> None:
    first = [local.detect_bytes(sample(name)) for name in SAMPLES]
    again = [local.detect_bytes(sample(name)) for name in SAMPLES]
    assert [(d.labels, d.extra) for d in first] == [(d.labels, d.extra) for d in again]


def test_raw_model_output_has_the_documented_shape(local: Any) -> None:
    from pipeline.detectors.local_model import letterbox
    from pipeline.images import decode_image

    blob, _ = letterbox(decode_image(sample("meadow.jpg")))
    (output,) = local.model.session.run(None, {"images": blob})
    assert output.shape == (1, 22, 2100) and output.dtype == np.float32
    assert 0.0 <= float(output[0, 4:].min()) and float(output[0, 4:].max()) <= 1.0


def test_post_processing_agrees_with_nudenets_own(local: Any) -> None:
    # Given: a raw output with a few strong anchors, as the model gives for a 640x480 picture
    from nudenet.nudenet import _postprocess  # nudenet's reference post-processing (needs its cv2)

    from pipeline.detectors.local_model import decode_output

    rng = np.random.default_rng(7)
    output = rng.uniform(0, 0.2, (1, 22, 2100)).astype(np.float32)
    for index in rng.choice(2100, 12, replace=False):
        output[0, :4, index] = [rng.uniform(20, 300), rng.uniform(20, 220), rng.uniform(10, 80), rng.uniform(10, 80)]
        output[0, 4 + rng.integers(18), index] = rng.uniform(0.3, 0.99)
    # When
    ours = decode_output(output, local.model.class_names, 0.5, (640, 480))
    theirs = _postprocess([output], 0, 160, 1.0, 4 / 3, 640, 480, 320, 320)
    # Then: the same boxes, classes and scores (boxes within a pixel: nudenet clips before suppressing)
    assert sorted((b.class_name, round(b.score, 4)) for b in ours) == sorted((d["class"], round(d["score"], 4)) for d in theirs)
    by_score = {round(d["score"], 4): d["box"] for d in theirs}
    for box in ours:
        assert np.abs(np.array(box.box) - by_score[round(box.score, 4)]).max() <= 1


def jpeg(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 140, 60)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "code"),
    [(b"not an image at all\n" * 10, "InvalidImageFormatException"), (jpeg(79, 200), "InvalidParameterException"),
     (jpeg(10_001, 90), "InvalidParameterException")],
    ids=["text", "under-80px", "over-10000px"],
)
def test_what_is_not_an_accepted_image_fails_like_rekognition(local: Any, data: bytes, code: str) -> None:
    with pytest.raises(UnsupportedImageError) as caught:
        local.detect_bytes(data)
    assert caught.value.error_code == code


# --- offline -------------------------------------------------------------------------------------

#: Run in a child: every Python socket refuses and counts, then the model loads and runs on a sample.
OFFLINE_SCRIPT = r"""
import json, socket, sys
attempts = []
class NoNetwork(socket.socket):
    def __init__(self, *args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled by the test")
def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network disabled by the test")
socket.socket, socket.create_connection, socket.getaddrinfo = NoNetwork, refuse, refuse
from pipeline.detectors.factory import build_local
from pipeline.settings import Settings
detector = build_local(Settings(detectors=("local",), local_model_threads=1), s3_client=None)
detection = detector.detect_bytes(open(sys.argv[1], "rb").read())
print(json.dumps({"attempts": len(attempts), "version": detection.model_version,
                  "labels": [label.to_dict() for label in detection.labels], "boxes": detection.extra["boxes"]}))
"""


def offline_argv() -> list[str]:
    """``unshare --net`` (a network namespace with no interface up, so not even C code can reach out) when allowed."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True).returncode == 0:
        return [unshare, "--net"]
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return [unshare, "-rn"]
    return []


def test_the_model_loads_and_runs_with_no_network(local: Any, tmp_path: Path) -> None:
    # Given: a child with no network namespace interfaces (when allowed) and every Python socket refused
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PIPELINE_"))}
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9", PYTHONPATH=str(ROOT))
    argv = [*offline_argv(), sys.executable, "-c", OFFLINE_SCRIPT, str(SAMPLES_DIR / "meadow.jpg")]
    # When
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # Then: it ran, never tried the network, and saw what it sees in this process
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == 0
    assert result["version"] == local.model.version
    expected = local.detect_bytes(sample("meadow.jpg"))
    assert result["labels"] == [label.to_dict() for label in expected.labels]
    assert result["boxes"] == expected.extra["boxes"]


# --- through S3 and combined with the hash list ---------------------------------------------------


def test_reads_the_announced_version_from_s3(s3: Any, bucket: str, model_path: Path) -> None:
    from pipeline.detectors.factory import build_local

    detector = build_local(Settings(detectors=("local",), local_model_threads=1), s3_client=s3)
    detection = detector.detect(upload(s3, bucket, sample("sunset.jpg")))
    assert (detection.detector, detection.labels) == ("local", ())
    assert detection.model_version == detector.model.version
    assert detection.elapsed_ms > 0


def combined(s3_for_hashlist: Any, s3_for_local: Any) -> CombinedDetector:
    """hashlist (the demo list) + local, as the local stack runs them."""
    settings = Settings(detectors=("hashlist", "local"), hashlist_path=str(HASHLIST_PATH), local_model_threads=1)
    from pipeline.detectors.factory import build_hashlist, build_local

    return CombinedDetector([build_hashlist(settings, s3_client=s3_for_hashlist), build_local(settings, s3_client=s3_for_local)])


def test_a_hash_list_hit_blocks_when_the_model_sees_nothing(s3: Any, bucket: str, model_path: Path) -> None:
    # Given: the demo's known-bad copy, which the model finds nothing in
    image = upload(s3, bucket, sample("known-bad-copy.jpg"))
    detector = combined(s3, s3)
    # When
    detection = detector.detect(image)
    # Then
    assert detection.detector == "hashlist+local"
    assert [(label.name, label.detector) for label in detection.labels] == [("Known Bad Content (demo)", "hashlist")]
    assert decide(detection.labels, Policy()) == outcomes.BLOCKED
    assert detection.model_version.split("+")[1].startswith("nudenet-3.4.2:320n:")


def test_the_model_failing_fails_the_detection_even_after_a_hash_list_hit(s3: Any, bucket: str, model_path: Path) -> None:
    # Given: the local detector's S3 connection is down (nothing listens on its endpoint)
    image = upload(s3, bucket, sample("known-bad-copy.jpg"))
    dead = aws_client("s3", f"http://127.0.0.1:{free_port()}")
    detector = combined(s3, dead)
    # When / Then: retryable, never a result
    with pytest.raises(RetryableError):
        detector.detect(image)


def test_an_unreadable_upload_fails_both_ways_never_clean(s3: Any, bucket: str, model_path: Path) -> None:
    image = upload(s3, bucket, b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(UnsupportedImageError) as caught:
        combined(s3, s3).detect(image)
    assert caught.value.error_code == "InvalidImageFormatException"
