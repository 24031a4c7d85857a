"""Where the tests find the real source projects the converters are compared with.

scripts/run_tests.sh installs them: torchvision in ``.venv-torch`` and fizyr keras-retinanet
1.0.0 (+ keras-resnet 0.1.0) in ``.sources/fizyr`` with ``tf_keras`` in the test environment.
``KERAS_RETINANET_TORCH_PYTHON`` / ``KERAS_RETINANET_FIZYR_PATH`` point elsewhere.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess

import cv2
import numpy as np
import pytest
from shared_data import photo_bgr

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCES = os.path.join(ROOT, "tests", "sources")
RACCOON = os.path.join(ROOT, "..", "shared", "data", "raccoon")
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def torch_python() -> str:
    path = os.environ.get(
        "KERAS_RETINANET_TORCH_PYTHON", os.path.join(ROOT, ".venv-torch", "bin", "python")
    )
    if not os.path.isfile(path):
        pytest.skip(f"no torchvision environment at {path} (scripts/run_tests.sh makes it)")
    return path


def fizyr_path() -> str:
    path = os.environ.get("KERAS_RETINANET_FIZYR_PATH", os.path.join(ROOT, ".sources", "fizyr"))
    if not os.path.isdir(os.path.join(path, "keras_retinanet")):
        pytest.skip(f"no fizyr keras-retinanet at {path} (scripts/run_tests.sh installs it)")
    if importlib.util.find_spec("tf_keras") is None:
        pytest.skip("tf_keras is not installed (fizyr's code needs Keras 2)")
    return path


def keras_resnet_02_path() -> str:
    """keras-resnet 0.2.0 (what fizyr 1.0.0 installs), to put before fizyr's folder."""
    path = os.environ.get(
        "KERAS_RETINANET_KERAS_RESNET_02", os.path.join(ROOT, ".sources", "keras-resnet-0.2.0")
    )
    if not os.path.isdir(os.path.join(path, "keras_resnet")):
        pytest.skip(f"no keras-resnet 0.2.0 at {path} (scripts/run_tests.sh installs it)")
    return path


def run(command: list[str], env: dict | None = None) -> None:
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=900
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def raccoon_image(tmp_path, height: int, width: int) -> tuple[str, np.ndarray]:
    """A real photo (:func:`shared_data.photo_bgr`: raccoon-1.jpg, or the CC0 photo of the
    same size that the repository carries) resized to ``height x width``: the RGB ``.npy``
    the reference scripts read, and the caffe-style ``(1, H, W, 3)`` batch this package's
    models take."""
    bgr, _ = photo_bgr()
    bgr = cv2.resize(bgr, (width, height))
    path = str(tmp_path / f"image_{height}x{width}.npy")
    np.save(path, np.ascontiguousarray(bgr[..., ::-1]))
    return path, (bgr.astype(np.float32) - CAFFE_MEAN_BGR)[None]


def raccoon_photo(tmp_path) -> tuple[str, str, np.ndarray]:
    """A photo at its own size (417 x 650, :func:`shared_data.photo_bgr`): its path, its RGB
    ``.npy`` and its BGR array."""
    bgr, _ = photo_bgr()
    path = str(tmp_path / "photo.png")  # lossless: the file decodes to exactly ``bgr``
    cv2.imwrite(path, bgr)
    npy = str(tmp_path / "photo.npy")
    np.save(npy, np.ascontiguousarray(bgr[..., ::-1]))
    return path, npy, bgr


def assert_same_detections(
    boxes, scores, labels, reference: dict, score_atol: float = 1e-4, capacity: int | None = None
) -> dict:
    """Every reference detection has a distinct one of ours with the same label, a box within
    0.5 px and a score within ``score_atol`` (near-equal scores may swap places, so match, not
    zip). When the reference list is full (``capacity`` detections), its last places were cut
    by score: a detection within ``score_atol`` of that cut may have lost its place to one just
    above it in ours (seen on the CC0 photo: fizyr's 300th at 0.28378, ours 0.28383).

    Returns the worst box and score differences."""
    keep = scores > 0
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    ref_keep = reference["scores"] > 0
    ref_boxes = reference["boxes"][ref_keep]
    ref_scores = reference["scores"][ref_keep]
    ref_labels = reference["labels"][ref_keep]
    assert len(scores) == len(ref_scores) > 0
    free = np.ones(len(scores), bool)
    worst_box = worst_score = 0.0
    at_cut = capacity is not None and len(ref_scores) == capacity
    cut = ref_scores.min() + score_atol if at_cut else -np.inf
    for box, score, label in zip(ref_boxes, ref_scores, ref_labels):
        distance = np.abs(boxes - box).max(axis=1)
        distance[~free | (labels != label)] = np.inf
        j = int(np.argmin(distance))
        if distance[j] > 0.5 and score <= cut:
            continue  # at the cut: its place went to a near-equal score
        assert distance[j] <= 0.5, (box, score, label, distance[j])
        assert abs(scores[j] - score) <= score_atol, (scores[j], score)
        free[j] = False
        worst_box = max(worst_box, float(distance[j]))
        worst_score = max(worst_score, float(abs(scores[j] - score)))
    return {"box": worst_box, "score": worst_score}
