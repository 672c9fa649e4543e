"""NudeNet's bundled ONNX model (``320n.onnx``, a YOLOv8n detector) run with ONNX Runtime.

The model file ships inside the nudenet wheel, so nothing is downloaded: it is found through
the installed package without importing it (importing nudenet would load OpenCV, which the
pipeline does not use). Pre- and post-processing are written here from the model's documented
shape instead of calling nudenet's ``NudeDetector``, for three reasons:

- ``NudeDetector`` builds its ``InferenceSession`` without ``SessionOptions``, so its thread
  count cannot be set, and a prefork pool would oversubscribe the cores;
- nudenet 3.4.2 hands the model BGR pixels (``cvtColor(RGBA2BGR)`` then ``swapRB``, nudenet
  issue #203), while Ultralytics models are trained on RGB; here the model gets RGB;
- decoding goes through :func:`pipeline.images.decode_image`, so this detector rejects exactly
  the images the others reject.

Model input ``images``: float32 ``[1, 3, 320, 320]``, RGB scaled to 0-1, the picture resized to
fit with its aspect kept and padded with black on the right and bottom (as nudenet pads).
Output ``output0``: float32 ``[1, 4 + C, N]``; each of the N anchors has a box (centre x, centre
y, width, height in input pixels) and C class scores (0-1). The C class names are in the model
file's metadata (``names``). As nudenet does, an anchor counts for its best class when that
score is at least 0.25, and overlapping boxes are reduced by non-maximum suppression across
classes (IoU 0.45).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.detectors.local_labels import Box
from pipeline.errors import ConfigurationError
from pipeline.images import fit_within

PACKAGE = "nudenet"
MODEL_FILE = "320n.onnx"
INPUT_SIZE = 320  #: The model's square input, pixels (its metadata ``imgsz``).
SCORE_THRESHOLD = 0.25  #: nudenet's: anchors scoring lower are dropped before suppression.
NMS_IOU = 0.45  #: nudenet's: a box overlapping a better one by more than this is suppressed.
DIGEST_CHARS = 12  #: Hex digits of the model file's SHA-256 kept in ``model_version``.
INSTALL_HINT = "install the `model` extra: pip install 's3-moderation-pipeline[model]'"


def bundled_model_path() -> Path:
    """The ONNX file inside the installed nudenet package; ConfigurationError when it is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(f"PIPELINE_DETECTORS includes local, but nudenet is not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise ConfigurationError(f"PIPELINE_DETECTORS includes local, but {path} is missing: {INSTALL_HINT}")
    return path


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, so taskset and cpusets count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads(worker_processes: int | None, cpus: int | None = None) -> int:
    """ONNX Runtime threads per process so that processes x threads <= usable CPUs (at least 1)."""
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, cpus // max(1, worker_processes or 1))


def session_options(threads: int) -> Any:
    """One inference at a time on ``threads`` threads, without busy-waiting between calls."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads burn a core while waiting for work; the cores are shared with other workers.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # The input is always one 320x320 picture; fixed shapes let ONNX Runtime plan for them.
    for dimension, value in (("batch", 1), ("height", INPUT_SIZE), ("width", INPUT_SIZE)):
        options.add_free_dimension_override_by_name(dimension, value)
    return options


@dataclass
class LocalModel:
    """The ONNX session, created on first use in the process that uses it (after a prefork fork)."""

    path: Path
    threads: int
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigurationError(f"PIPELINE_LOCAL_MODEL_THREADS must be at least 1, got {self.threads}")
        self.digest = hashlib.sha256(self.path.read_bytes()).hexdigest()

    @functools.cached_property
    def version(self) -> str:
        """``nudenet-<version>:<model file>:<first 12 hex of its SHA-256>``, the report's model_version."""
        return f"{PACKAGE}-{importlib.metadata.version(PACKAGE)}:{self.path.stem}:{self.digest[:DIGEST_CHARS]}"

    @functools.cached_property
    def session(self) -> Any:
        """The InferenceSession, on the CPU only (no provider that could reach a network)."""
        import onnxruntime

        return onnxruntime.InferenceSession(
            str(self.path), sess_options=session_options(self.threads), providers=["CPUExecutionProvider"]
        )

    @functools.cached_property
    def class_names(self) -> tuple[str, ...]:
        """The model's classes in output order, from the file's own metadata."""
        return class_names_from_metadata(self.session.get_modelmeta().custom_metadata_map)

    def predict(self, image: Image.Image) -> list[Box]:
        """The model's boxes for a decoded image, in the image's pixels, best first."""
        blob, scale = letterbox(image)
        (output,) = self.session.run(None, {self.session.get_inputs()[0].name: blob})
        return decode_output(output, self.class_names, scale, image.size)


def class_names_from_metadata(metadata: dict[str, str]) -> tuple[str, ...]:
    """``names`` as Ultralytics writes it (``"{0: 'A', 1: 'B'}"``) -> ('A', 'B')."""
    try:
        names = ast.literal_eval(metadata["names"])
        return tuple(names[index] for index in range(len(names)))
    except (KeyError, ValueError, SyntaxError, TypeError) as exc:
        raise ConfigurationError(f"the local model's metadata has no usable class names: {exc!r}") from None


def letterbox(image: Image.Image) -> tuple[np.ndarray, float]:
    """The model's input blob and the scale from image pixels to input pixels."""
    rgb = image.convert("RGB")
    scale = INPUT_SIZE / max(rgb.size)
    resized = rgb.resize(fit_within(rgb.size, INPUT_SIZE), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (INPUT_SIZE, INPUT_SIZE))  # black, as nudenet pads
    canvas.paste(resized, (0, 0))
    blob = np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1)[np.newaxis] / np.float32(255.0)
    return np.ascontiguousarray(blob), scale


def decode_output(output: np.ndarray, names: tuple[str, ...], scale: float, size: tuple[int, int]) -> list[Box]:
    """``[1, 4 + C, N]`` -> boxes of the best class per anchor, suppressed, in image pixels."""
    rows = np.asarray(output, dtype=np.float32)[0].T
    if rows.shape[1] != 4 + len(names):
        raise ValueError(f"model output has {rows.shape[1]} values per anchor, expected {4 + len(names)}")
    scores = rows[:, 4:]
    best, class_ids = scores.max(axis=1), scores.argmax(axis=1)
    keep = np.flatnonzero(best >= SCORE_THRESHOLD)
    corners = _corners(rows[keep, :4])
    order = non_max_suppression(corners, best[keep], NMS_IOU)
    return [_box(names[class_ids[keep[i]]], float(best[keep[i]]), corners[i] / scale, size) for i in order]


def _corners(xywh: np.ndarray) -> np.ndarray:
    """Centre x, centre y, width, height -> x1, y1, x2, y2."""
    half = xywh[:, 2:4] / 2
    return np.concatenate([xywh[:, :2] - half, xywh[:, :2] + half], axis=1)


def non_max_suppression(corners: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy NMS: indices of the boxes kept, best score first."""
    order, kept = list(np.argsort(-scores, kind="stable")), []
    areas = np.prod(np.clip(corners[:, 2:] - corners[:, :2], 0, None), axis=1)
    while order:
        best, order = order[0], order[1:]
        kept.append(int(best))
        if not order:
            break
        rest = np.array(order)
        top_left = np.maximum(corners[best, :2], corners[rest, :2])
        bottom_right = np.minimum(corners[best, 2:], corners[rest, 2:])
        overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = overlap / np.maximum(areas[best] + areas[rest] - overlap, 1e-9)
        order = [index for index, value in zip(order, iou) if value <= iou_threshold]
    return kept


def _box(class_name: str, score: float, corners: np.ndarray, size: tuple[int, int]) -> Box:
    """A Box clipped to the image, as integer x, y, width, height."""
    width, height = size
    x1, y1 = float(np.clip(corners[0], 0, width)), float(np.clip(corners[1], 0, height))
    x2, y2 = float(np.clip(corners[2], 0, width)), float(np.clip(corners[3], 0, height))
    return Box(class_name, score, (int(x1), int(y1), int(x2 - x1), int(y2 - y1)))


__all__ = [
    "INPUT_SIZE",
    "LocalModel",
    "bundled_model_path",
    "class_names_from_metadata",
    "decode_output",
    "default_threads",
    "letterbox",
    "non_max_suppression",
    "usable_cpus",
]
