"""benchmarks/bench_learning.py: the three models see the same batches, the scoring, and the
quick run of all three frameworks end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from shared_data import DATA, missing_reason

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
bench = pytest.importorskip("bench_learning")
TORCH_PYTHON = os.environ.get("KERAS_RETINANET_TORCH_PYTHON", str(ROOT / ".venv-torch/bin/python"))

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())


def _spec(tmp_path, **overrides):
    spec = {"dataset": str(DATA / "voc2007_sample"), "seed": 3, "steps": 4, "batch_size": 2,
            "min_side": 64, "max_side": 96, "train_set": "trainval", "test_set": "test",
            "test_images": 0, "ours_lr": 1e-4, "ours_clipnorm": None,
            "batches": str(tmp_path / "batches.npz")}  # fmt: skip
    return dict(spec, **overrides)


def test_the_peers_get_the_batches_ours_trains_on(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("ours trains through tf.data on TensorFlow")
    from keras_retinanet.model.anchors import AnchorParameters
    from keras_retinanet.preprocessing.image import pad_batch
    from keras_retinanet.training import create_generators, fit_input

    spec = _spec(tmp_path)
    truth = bench.write_batches(spec, spec["batches"])
    arrays = dict(np.load(spec["batches"]))
    generator, _ = create_generators(bench._config(spec), AnchorParameters())
    assert len(generator) == 3  # 5 images in batches of 2: step 3 starts the second pass
    data, _ = fit_input(generator)
    for step, (images, _) in enumerate(data.take(4)):
        stream, boxes, labels = bench.batch_of(arrays, step)
        assert len(stream) == len(boxes) == len(labels) >= 1
        np.testing.assert_array_equal(images.numpy(), pad_batch(stream), err_msg=f"step {step}")
    assert len(truth["scales"]) == 5 and len(truth["classes"]) == 20
    assert len(bench.test_images(arrays)) == 5


def test_scoring_takes_boxes_back_to_the_original_pixels(tmp_path):
    truth = {"classes": ["a", "b"], "scales": [0.5, 2.0], "annotations": [
        {"bboxes": np.array([[10.0, 10, 50, 40]]), "labels": np.array([0])},
        {"bboxes": np.array([[5.0, 5, 20, 30], [40, 40, 60, 70]]), "labels": np.array([1, 0])},
    ]}  # fmt: skip

    def write(shift):
        found = {}
        for i, (scale, boxes) in enumerate(zip(truth["scales"], truth["annotations"])):
            found[f"boxes_{i}"] = (boxes["bboxes"] + shift) * scale  # in the resized pixels
            found[f"scores_{i}"] = np.full(len(boxes["labels"]), 0.9)
            found[f"labels_{i}"] = boxes["labels"]
        np.savez(tmp_path / "d.npz", **found)
        return bench.score(str(tmp_path / "d.npz"), truth)

    exact = write(0.0)
    assert exact["mAP_voc07"] == pytest.approx(1.0) and exact["mAP_all_point"] == 1.0
    assert exact["per_class"] == {"a": pytest.approx(1.0), "b": pytest.approx(1.0)}
    assert exact["detections"] == 3
    assert write(12.0)["mAP_voc07"] < 0.5  # 12 px off in the original pixels: IoU below 0.5


def test_ratios_are_means_over_seeds_and_undefined_for_a_peer_at_zero():
    rows = [{"dataset": "d", "model": m, "seed": s, "mAP_voc07": v} for m, s, v in (
        ("ours", 0, 0.4), ("ours", 1, 0.6), ("kerashub", 0, 0.25), ("kerashub", 1, 0.25),
        ("torchvision", 0, 0.0), ("torchvision", 1, 0.0))]  # fmt: skip
    assert bench.ratios(rows) == {("d", "kerashub"): pytest.approx(2.0), ("d", "torchvision"): None}


@pytest.mark.skipif(not os.path.exists(TORCH_PYTHON), reason=f"no torchvision at {TORCH_PYTHON}")
def test_quick_mode_trains_and_scores_every_model(tmp_path):
    out = tmp_path / "rows.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_learning.py"), "--quick",
               "--torch-python", TORCH_PYTHON, "--json", str(out)]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert process.returncode == 0, process.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["model"] for r in rows] == ["ours", "ours_auto", "kerashub", "torchvision"]
    for r in rows:
        assert r["dataset"] == "raccoon" and r["steps"] == 2 and r["train_seconds"] > 0
        assert r["img_s"] > 0 and r["peak_rss_mb"] > 200
        assert 0.0 <= r["mAP_voc07"] <= 1.0 and set(r["per_class"]) == {"raccoon"}
    assert "| raccoon | torchvision | 0 | 2 |" in process.stdout
    assert "ours/peer mAP@0.5" in process.stdout
