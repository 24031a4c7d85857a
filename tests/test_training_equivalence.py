"""``retinanet-train`` on a converted model computes what its source's training computes: the
same targets, the same losses and the same gradients, on the same real batch and weights,
checked against the real packages (torchvision in its own environment, fizyr keras-retinanet
1.0.0 on Keras 2: tests/sources/*_training_reference.py).

The batch: a crowded BCCD blood smear (20 cells, many touching) and a VOC photo with five
chairs, at two different sizes, so the batch is padded and each image has several boxes.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET

import cv2
import keras
import numpy as np
import pytest
from shared_data import DATA, needs
from sources.common import SOURCES, fizyr_path, run, torch_python

from keras_retinanet import models
from keras_retinanet.convert import convert_torchvision
from keras_retinanet.convert.common import conv_kernel
from keras_retinanet.model.anchors import IGNORE, NEGATIVE, POSITIVE, anchors_for_shape
from keras_retinanet.model.losses import losses_for
from keras_retinanet.model.targets import anchor_targets_bbox
from keras_retinanet.model.variants import get_variant
from keras_retinanet.preprocessing.image import pad_batch
from keras_retinanet.preprocessing.voc import read_voc_annotation

NUM_CLASSES = 5
# (set, image, resize factor): 640x480 -> 320x240 and 500x375 -> 350x262.
BATCH = (("bccd", "BloodImage_00000", 0.5), ("voc2007_sample", "000005", 0.7))

pytestmark = [needs("bccd"), needs("voc2007_sample")]
tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="gradients taken with tf.GradientTape"
)


def real_batch() -> tuple[list[np.ndarray], list[dict]]:
    """The BGR uint8 images (resized) and their annotations (every box, in their pixels)."""
    names: dict[str, int] = {}
    images, annotations = [], []
    for dataset, name, factor in BATCH:
        xml = str(DATA / dataset / "Annotations" / f"{name}.xml")
        for obj in ET.parse(xml).getroot().iter("object"):
            names.setdefault(obj.findtext("name"), len(names))
        annotation, _ = read_voc_annotation(xml, names)
        image = cv2.imread(str(DATA / dataset / "JPEGImages" / f"{name}.jpg"))
        size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
        images.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        boxes = annotation["bboxes"] * np.array(
            [size[0] / image.shape[1], size[1] / image.shape[0]] * 2
        )
        annotations.append(
            {
                "bboxes": boxes.astype(np.float32),
                "labels": annotation["labels"],
                "difficult": annotation["difficult"],  # 000005 has two difficult chairs
            }
        )
    assert len(names) <= NUM_CLASSES and min(len(a["labels"]) for a in annotations) >= 5
    assert sum(a["difficult"].sum() for a in annotations) >= 2
    return images, annotations


def write_batch(path, images, annotations, rgb: bool, **extra) -> str:
    arrays = dict(extra)
    for i, (image, annotation) in enumerate(zip(images, annotations)):
        arrays[f"image_{i}"] = np.ascontiguousarray(image[..., ::-1]) if rgb else image
        arrays[f"boxes_{i}"] = annotation["bboxes"]
        arrays[f"labels_{i}"] = annotation["labels"]
    np.savez(path, **arrays)
    return str(path)


def our_targets(variant, images, annotations):
    variant = get_variant(variant)
    batch = pad_batch(images, variant.pad_multiple, variant.pad_value())
    anchors = anchors_for_shape(batch.shape[1:3], rule=variant.anchor_rule)
    regression, labels = anchor_targets_bbox(
        anchors,
        images,
        annotations,
        NUM_CLASSES,
        coder=variant.box_coder,
        matcher=variant.matcher,
    )
    return batch, anchors, regression, labels


def our_losses_and_gradients(snapshot: str, variant: str, images, annotations) -> dict:
    import tensorflow as tf

    model = models.load_model(snapshot)
    batch, _, regression_targets, label_targets = our_targets(variant, images, annotations)
    losses = losses_for(variant)
    last = {
        "cls": model.get_layer("classification_submodel").get_layer("pyramid_classification"),
        "reg": model.get_layer("regression_submodel").get_layer("pyramid_regression"),
    }
    weights = [last["cls"].kernel, last["cls"].bias, last["reg"].kernel, last["reg"].bias]
    with tf.GradientTape() as tape:
        regression, classification = model(batch, training=False)  # BatchNorm frozen
        classification_loss = losses["classification"](label_targets, classification)
        box_loss = losses["regression"](regression_targets, regression)
        total = classification_loss + box_loss
    gradients = [np.asarray(g) for g in tape.gradient(total, weights)]
    return {
        "classification": float(classification_loss),
        "bbox_regression": float(box_loss),
        "cls_weight": gradients[0],
        "cls_bias": gradients[1],
        "reg_weight": gradients[2],
        "reg_bias": gradients[3],
        "states": regression_targets[..., 4],
        "input_shape": batch.shape,
    }


def relative(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))


@tensorflow_only
@pytest.mark.parametrize("arch", ["v1", "v2"])
def test_losses_and_gradients_equal_torchvision_training(tmp_path, arch):
    images, annotations = real_batch()
    batch_npz = write_batch(tmp_path / "batch.npz", images, annotations, rgb=True)
    out = tmp_path / "reference"
    run(
        [
            torch_python(),
            os.path.join(SOURCES, "torchvision_training_reference.py"),
            batch_npz,
            str(out),
            "--arch",
            arch,
            "--num-classes",
            str(NUM_CLASSES),
        ]
    )
    ref = dict(np.load(out / "reference.npz"))
    snapshot = str(tmp_path / "converted.keras")
    classes = [f"c{i}" for i in range(NUM_CLASSES)]
    # The reference model runs with BatchNorm's default eps (1e-5); the v1 default of the
    # converter is the published file's 0.
    convert_torchvision(
        str(out / "model.pth"), snapshot, arch=arch, classes=classes, bn_epsilon=1e-5
    )
    variant = f"torchvision_{arch}"
    assert models.read_metadata(snapshot)["variant"]["matcher"] == "torchvision"
    # torchvision knows no difficult flag: its users pass the boxes they train on; so do we.
    plain = [{k: a[k] for k in ("bboxes", "labels")} for a in annotations]
    ours = our_losses_and_gradients(snapshot, variant, images, plain)
    # The same padded input (32), and the same anchor states as torchvision's Matcher.
    assert tuple(ref["input_shape"][2:]) == ours["input_shape"][1:3]
    for i in range(len(images)):
        matched = ref[f"matched_{i}"]
        theirs = np.where(matched >= 0, POSITIVE, np.where(matched == -1, NEGATIVE, IGNORE))
        np.testing.assert_array_equal(ours["states"][i], theirs)
    worst = {}
    for loss in ("classification", "bbox_regression"):
        worst[loss] = abs(ours[loss] - float(ref[loss])) / abs(float(ref[loss]))
        assert worst[loss] <= 1e-4, (loss, ours[loss], float(ref[loss]))
    for name in ("cls_weight", "reg_weight"):
        theirs = conv_kernel(ref[name])
        worst[name] = relative(ours[name], theirs)
        assert worst[name] <= 1e-3, (name, worst[name])
    for name in ("cls_bias", "reg_bias"):
        worst[name] = relative(ours[name], ref[name])
        assert worst[name] <= 1e-3, (name, worst[name])
    print(f"torchvision {arch}: largest relative differences {worst}")


def test_targets_and_losses_equal_fizyr(tmp_path):
    # The difficult flags go to ours too: fizyr trains difficult boxes as any other.
    images, annotations = real_batch()
    batch, anchors, regression, labels = our_targets("fizyr", images, annotations)
    # fizyr pads a batch to its largest image, no more: 320x240 and 350x262 -> 262x350.
    assert batch.shape[1:3] == (262, 350)
    rng = np.random.default_rng(0)
    predictions = {
        "classification": rng.uniform(0.001, 0.3, labels[..., :-1].shape).astype(np.float32),
        "regression": rng.normal(0, 0.3, regression[..., :-1].shape).astype(np.float32),
    }
    batch_npz = write_batch(tmp_path / "batch.npz", images, annotations, rgb=False, **predictions)
    out = tmp_path / "reference"
    script = os.path.join(SOURCES, "fizyr_training_reference.py")
    run(
        [sys.executable, script, batch_npz, str(out), "--num-classes", str(NUM_CLASSES)],
        env={"PYTHONPATH": fizyr_path()},
    )
    ref = dict(np.load(out / "reference.npz"))
    np.testing.assert_allclose(anchors, ref["anchors"], atol=1e-4)
    states = regression[..., 4]
    np.testing.assert_array_equal(states, ref["regression"][..., 4])
    np.testing.assert_array_equal(states, ref["labels"][..., -1])
    assert (states == POSITIVE).sum() > 50 and (states == IGNORE).sum() > 50
    kept = states != IGNORE  # fizyr leaves a one-hot on positives it ignores after
    np.testing.assert_array_equal(labels[kept], ref["labels"][kept])
    # fizyr computes the deltas in float64; far anchors' deltas run into the hundreds.
    largest = {"regression": relative(regression[..., :4], ref["regression"][..., :4])}
    assert largest["regression"] <= 1e-5
    losses = losses_for("fizyr")
    ours = {
        "focal": float(losses["classification"](labels, predictions["classification"])),
        "smooth_l1": float(losses["regression"](regression, predictions["regression"])),
    }
    for name, value in ours.items():
        largest[name] = abs(value - float(ref[name])) / abs(float(ref[name]))
        assert largest[name] <= 1e-5, (name, value, float(ref[name]))
    print(f"fizyr: largest differences {largest}")
