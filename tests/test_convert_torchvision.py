"""torchvision's RetinaNets converted here give torchvision's own outputs (the real package,
run by tests/sources/torchvision_reference.py in its own environment)."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from sources.common import (
    SOURCES,
    assert_same_detections,
    raccoon_image,
    raccoon_photo,
    run,
    torch_python,
)

from keras_retinanet import models
from keras_retinanet.cli import convert as convert_cli
from keras_retinanet.convert import ConversionError, convert_torchvision
from keras_retinanet.inference import detect
from keras_retinanet.model import anchors as anchors_lib


def reference(tmp_path, image_npy: str, *args: str) -> tuple[str, dict]:
    out = tmp_path / "reference"
    run(
        [
            torch_python(),
            os.path.join(SOURCES, "torchvision_reference.py"),
            image_npy,
            str(out),
            *args,
        ]
    )
    return str(out / "model.pth"), dict(np.load(out / "reference.npz"))


def compare(snapshot: str, batch: np.ndarray, ref: dict) -> dict:
    training = models.load_model(snapshot)
    regression, classification = training.predict_on_batch(batch)
    assert tuple(ref["input_shape"][2:]) == batch.shape[1:3]
    np.testing.assert_allclose(regression[0], ref["regression"], atol=1e-4)
    np.testing.assert_allclose(classification[0], ref["classification"], atol=1e-4)
    inference = models.load_model(snapshot, convert=True)
    grid = keras.Model(inference.inputs, inference.get_layer("anchors").output)
    np.testing.assert_allclose(grid.predict_on_batch(batch)[0], ref["anchors"], atol=1e-3)
    boxes, scores, labels = inference.predict_on_batch(batch)
    return assert_same_detections(boxes[0], scores[0], labels[0], ref)


@pytest.mark.parametrize(
    "arch, height, width, extra",
    [
        # Sizes whose P5 is odd: torchvision's P6/P7 strides are then not 64/128 (416x544:
        # P6 has 7 x 9 cells, stride 59 x 60; 480x640: 8 x 10 cells, stride 60 x 64), and its
        # symmetric stride-2 padding differs from TensorFlow's "same" at every level.
        ("v1", 416, 544, ["--bn-eps", "0"]),
        ("v2", 480, 640, []),
    ],
)
def test_converted_torchvision_model_matches_torchvision(tmp_path, arch, height, width, extra):
    image_npy, batch = raccoon_image(tmp_path, height, width)
    pth, ref = reference(tmp_path, image_npy, "--arch", arch, *extra)
    snapshot = str(tmp_path / "converted.keras")
    bn_eps = 0.0 if "0" in extra else 1e-5
    metadata = convert_torchvision(
        pth, snapshot, arch=arch, classes=[f"c{i}" for i in range(5)], bn_epsilon=bn_eps
    )
    assert metadata["variant"]["name"] == f"torchvision_{arch}"
    assert models.read_metadata(snapshot)["classes"] == [f"c{i}" for i in range(5)]
    worst = compare(snapshot, batch, ref)
    assert worst["box"] <= 0.5 and worst["score"] <= 1e-4
    # The loader's anchors (training targets) are torchvision's AnchorGenerator's to the bit;
    # the centred rule's are not (other P6/P7 strides, centres on cell corners).
    ours = anchors_lib.anchors_for_shape((height, width), rule="torchvision")
    np.testing.assert_array_equal(ours, ref["anchors"])
    assert np.abs(anchors_lib.anchors_for_shape((height, width)) - ours).max() > 4


def test_cli_converts_an_old_torchvision_file_and_refuses_the_wrong_arch(tmp_path, capsys):
    """A v1 COCO file as torchvision 0.x wrote it in 2019: the legacy (pre-1.6) layout, the
    pre-0.13 key names, 91 outputs; run with FrozenBatchNorm2d at eps 0 (the default here)."""
    image_npy, batch = raccoon_image(tmp_path, 256, 320)
    args = ("--arch", "v1", "--num-classes", "91", "--legacy-file", "--old-keys", "--bn-eps", "0")
    pth, ref = reference(tmp_path, image_npy, *args)
    out = str(tmp_path / "coco.keras")
    assert convert_cli.main(["--from", "torchvision", pth, out, "--arch", "v2"]) == 2
    assert "v1" in capsys.readouterr().err
    assert convert_cli.main(["--from", "torchvision", pth, out]) == 0
    metadata = models.read_metadata(out)
    # 91 outputs: torchvision's COCO labels by category id, 0 the background.
    assert metadata["classes"][:2] == ["__background__", "person"]
    assert metadata["classes"][12] == "N/A" and metadata["classes"][90] == "toothbrush"
    compare(out, batch, ref)


def test_convert_torchvision_errors_name_the_file(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="notes.pth"):
        convert_torchvision(str(bad), str(tmp_path / "x.keras"))
    with pytest.raises(FileNotFoundError):
        convert_torchvision(str(tmp_path / "missing.pth"), str(tmp_path / "x.keras"))
    with pytest.raises(ConversionError, match="--arch"):
        convert_torchvision(str(bad), str(tmp_path / "x.keras"), arch="v3")


def test_whole_pipeline_on_a_photo_matches_torchvision(tmp_path):
    """The photo at its own size (417 x 650) through resizing to 800 x 1246 (rounded down,
    bilinear without antialias), padding to 800 x 1248 with PyTorch's zeros, the network and
    boxes mapped back per axis: torchvision's detections in the photo's pixels."""
    _, photo_npy, bgr = raccoon_photo(tmp_path)
    pth, ref = reference(tmp_path, photo_npy, "--arch", "v2", "--resize", "800", "1333")
    assert tuple(ref["input_shape"][2:]) == (800, 1248)
    snapshot = str(tmp_path / "converted.keras")
    convert_torchvision(pth, snapshot, arch="v2")
    (found,) = detect(models.load_model(snapshot, convert=True), [bgr], 800, 1333)
    ours = np.full((300, 4), -1.0, np.float32), np.full(300, -1.0), np.full(300, -1)
    count = len(found.scores)
    ours[0][:count], ours[1][:count], ours[2][:count] = found.boxes, found.scores, found.labels
    # Scores within 2e-4: float32 through a random-weight ResNet50 at 800 x 1248 differs by up
    # to 1.1e-4 on the carried CC0 photo (under 1e-4 on raccoon-1.jpg); boxes within 0.5 px.
    worst = assert_same_detections(*ours, ref, score_atol=2e-4)
    assert worst["box"] <= 0.5 and worst["score"] <= 2e-4
