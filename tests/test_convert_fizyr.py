"""fizyr keras-retinanet snapshots converted here give fizyr's own outputs (the real fizyr
1.0.0 with keras-resnet 0.1.0 on Keras 2, run by tests/sources/fizyr_reference.py)."""

from __future__ import annotations

import json
import os
import sys

import h5py
import numpy as np
import pytest
from sources.common import (
    SOURCES,
    assert_same_detections,
    fizyr_path,
    keras_resnet_02_path,
    raccoon_image,
    raccoon_photo,
    run,
)

from keras_retinanet import models
from keras_retinanet.cli import convert as convert_cli
from keras_retinanet.convert import COCO_CLASSES, ConversionError, convert_fizyr
from keras_retinanet.convert.common import class_names
from keras_retinanet.inference import detect

PHOTO_SIDES = (480, 800)  # the photo (417 x 650) is enlarged to 480 x 748 by fizyr's rule


def keras3_names(source, target) -> None:
    """A copy of a Keras 2 .h5 with its weights named as Keras 3 names them (no ``:0``)."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:

        def copy(name, obj):
            if isinstance(obj, h5py.Dataset):
                dst.create_dataset(name.replace(":0", ""), data=obj[()])

        src["model_weights"].visititems(copy)


def assert_same_weights(path_a: str, path_b: str) -> None:
    weights_a = models.load_model(path_a).get_weights()
    weights_b = models.load_model(path_b).get_weights()
    assert len(weights_a) == len(weights_b) > 300
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


def reference(tmp_path, image_npy: str, *args: str, path: str | None = None) -> tuple[str, dict]:
    out = tmp_path / "reference"
    script = os.path.join(SOURCES, "fizyr_reference.py")
    run(
        [sys.executable, script, image_npy, str(out), *args],
        env={"PYTHONPATH": path or fizyr_path()},
    )
    return str(out), dict(np.load(out / "reference.npz"))


def compare(snapshot: str, batch: np.ndarray, ref: dict) -> dict:
    regression, classification = models.load_model(snapshot).predict_on_batch(batch)
    np.testing.assert_allclose(regression[0], ref["regression"], atol=1e-4)
    np.testing.assert_allclose(classification[0], ref["classification"], atol=1e-4)
    boxes, scores, labels = models.load_model(snapshot, convert=True).predict_on_batch(batch)
    return assert_same_detections(boxes[0], scores[0], labels[0], ref)


@pytest.mark.parametrize(
    "backbone, height, width",
    [
        # Even sizes: keras-resnet's "same" pool1 pads only after, keras.applications' before.
        ("resnet50", 512, 640),
        # Odd feature sizes at every level; ResNet101 numbers its blocks b1, b2, ...
        ("resnet101", 328, 424),
    ],
)
def test_converted_fizyr_model_matches_fizyr(tmp_path, capsys, backbone, height, width):
    image_npy, batch = raccoon_image(tmp_path, height, width)
    photo_path, _, bgr = raccoon_photo(tmp_path)
    sides = [str(side) for side in PHOTO_SIDES]
    photo = ["--photo", photo_path, "--photo-sides", *sides] if backbone == "resnet50" else []
    out, ref = reference(tmp_path, image_npy, "--backbone", backbone, *photo)
    snapshot = str(tmp_path / "converted.keras")
    metadata = convert_fizyr(os.path.join(out, "model.h5"), snapshot)
    assert metadata["backbone"] == backbone and metadata["num_classes"] == 4
    assert metadata["variant"]["name"] == "fizyr"
    worst = compare(snapshot, batch, ref)
    assert worst["box"] <= 0.5 and worst["score"] <= 1e-4
    if backbone != "resnet50":
        return
    # fizyr's inference snapshot holds the same weights: it converts to the same model.
    from_inference = str(tmp_path / "from_inference.keras")
    inference_h5 = os.path.join(out, "inference.h5")
    assert convert_cli.main(["--from", "fizyr", inference_h5, from_inference]) == 0
    assert_same_weights(from_inference, snapshot)
    # Keras 2 names weights "kernel:0", Keras 3 "kernel": both read.
    keras3_names(os.path.join(out, "model.h5"), tmp_path / "keras3.h5")
    keras3 = str(tmp_path / "keras3.keras")
    convert_fizyr(str(tmp_path / "keras3.h5"), keras3, classes=["a", "b", "c", "d"])
    assert models.read_metadata(keras3)["classes"] == ["a", "b", "c", "d"]
    assert_same_weights(keras3, snapshot)
    # The whole pipeline on the photo at its own size, as fizyr's README runs it: resized by
    # fizyr's rule (OpenCV bilinear by the scale factor) and, like fizyr, not padded: the
    # variant's pad rule, with no option given (padded to 32, 40 of fizyr's top 50 came back).
    model = models.load_model(snapshot, convert=True)
    (found,) = detect(model, [bgr], *PHOTO_SIDES)
    full = {k[5:]: v for k, v in ref.items() if k.startswith("full_")}
    padded = [np.full((300, 4), -1.0), np.full(300, -1.0), np.full(300, -1)]
    for column, values in zip(padded, (found.boxes, found.scores, found.labels)):
        column[: len(values)] = values
    assert_same_detections(*padded, full, capacity=len(padded[1]))
    # retinanet-predict on the converted snapshot gives fizyr's own top 50.
    from keras_retinanet.cli import predict as predict_cli

    sides = ["--image-min-side", str(PHOTO_SIDES[0]), "--image-max-side", str(PHOTO_SIDES[1])]
    predictions = tmp_path / "predictions"
    argv = [snapshot, photo_path, "-o", str(predictions), "--score-threshold", "0.05", *sides]
    assert predict_cli.main([*argv, "--no-draw", "--no-progress"]) == 0
    rows = json.loads((predictions / "detections.json").read_text())["images"][0]["detections"]
    rows = sorted(rows, key=lambda row: -row["score"])[:50]
    np.testing.assert_allclose([r["box"] for r in rows], full["boxes"][:50], atol=0.5)
    np.testing.assert_allclose([r["score"] for r in rows], full["scores"][:50], atol=1e-4)
    assert [r["label"] for r in rows] == full["labels"][:50].tolist()

    # fizyr's own files, given where a snapshot is taken, are converted on the way and said
    # so in one line (they ended in a raw TypeError: BatchNormalization's 'freeze').
    direct = tmp_path / "direct"
    argv = [inference_h5, photo_path, "-o", str(direct), "--score-threshold", "0.05", *sides]
    assert predict_cli.main([*argv, "--no-draw", "--no-progress"]) == 0
    assert "is a fizyr keras-retinanet snapshot" in capsys.readouterr().err
    same = json.loads((direct / "detections.json").read_text())["images"][0]["detections"]
    assert sorted(same, key=lambda row: -row["score"])[:50] == rows
    assert convert_cli.main([os.path.join(out, "model.h5"), str(tmp_path / "inf.keras")]) == 0
    assert models.is_inference_model(models.load_model(str(tmp_path / "inf.keras")))
    assert "--from fizyr" in capsys.readouterr().err


def test_snapshot_of_fizyr_with_keras_resnet_0_2_matches_it(tmp_path):
    """fizyr 1.0.0 installs keras-resnet 0.2.0, whose stem convolution pads "same" (2 before
    and 3 after on an even size): read from the file, it picks its own variant."""
    image_npy, batch = raccoon_image(tmp_path, 512, 640)
    path = os.pathsep.join([keras_resnet_02_path(), fizyr_path()])
    out, ref = reference(tmp_path, image_npy, path=path)
    snapshot = str(tmp_path / "converted.keras")
    metadata = convert_fizyr(os.path.join(out, "model.h5"), snapshot)
    assert metadata["variant"]["name"] == "fizyr_keras_resnet_0_2"
    assert metadata["source"]["keras_resnet"] == "0.2"
    compare(snapshot, batch, ref)
    # The padding matters: read as a keras-resnet 0.1 model, the outputs are not fizyr's.
    wrong = str(tmp_path / "as_0_1.keras")
    convert_fizyr(os.path.join(out, "model.h5"), wrong, keras_resnet="0.1")
    regression, _ = models.load_model(wrong).predict_on_batch(batch)
    assert np.abs(regression[0] - ref["regression"]).max() > 1e-3


def test_fizyr_class_names_and_errors(tmp_path):
    assert class_names(None, 80, COCO_CLASSES)[0] == "person"
    assert class_names(None, 3, COCO_CLASSES) == ["class_0", "class_1", "class_2"]
    names = tmp_path / "classes.csv"
    names.write_text("raccoon,0\ndog,1\n")
    assert class_names(str(names), 2, COCO_CLASSES) == ["raccoon", "dog"]
    with pytest.raises(ConversionError, match="3 classes but 2"):
        class_names(str(names), 3, COCO_CLASSES)
    not_h5 = tmp_path / "model.h5"
    not_h5.write_text("x")
    with pytest.raises(ConversionError, match="model.h5"):
        convert_fizyr(str(not_h5), str(tmp_path / "out.keras"))
    with pytest.raises(FileNotFoundError):
        convert_fizyr(str(tmp_path / "missing.h5"), str(tmp_path / "out.keras"))
