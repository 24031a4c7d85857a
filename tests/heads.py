"""Small models for tests: untrained ones with detections worth comparing (test_export,
test_fold, test_cli_convert, test_settings), and the arguments of a tiny training run."""

from __future__ import annotations

import keras
import numpy as np

from keras_retinanet import models
from keras_retinanet.inference import prepare_batch
from keras_retinanet.model.anchors import AnchorParameters


def spread_out_heads(model: keras.Model, batch: np.ndarray) -> None:
    """Rescale each head's last convolution of a training ``model``, per output channel, so
    that on ``batch`` (preprocessed ``(1, H, W, 3)`` float32) the class logits have mean -4.5
    and std 1.5 over the anchors (about 0.1 % of (anchor, class) pairs above 0.5) and the box
    deltas std 1 (boxes move away from their anchors). An untrained backbone's P3..P7
    features are tiny: without this every score sits at the prior, thousands of near-equal
    candidates whose order is rounding noise."""
    pyramid = keras.Model(model.inputs, [model.get_layer(f"P{i}").output for i in range(3, 8)])
    features = pyramid([batch])
    for head, std, mean in (("classification", 1.5, -4.5), ("regression", 1.0, None)):
        submodel = model.get_layer(f"{head}_submodel")
        last = submodel.get_layer(f"pyramid_{head}")
        raw = keras.Model(submodel.inputs, last.output)
        outputs = np.concatenate(
            [np.asarray(raw(f)).reshape(-1, last.filters) for f in features], axis=0
        )
        *depthwise, kernel, bias = last.get_weights()  # a separable conv: depthwise first
        factor = std / outputs.std(axis=0)
        if mean is not None:
            bias = mean - factor * (outputs.mean(axis=0) - bias)
        last.set_weights([*depthwise, kernel * factor, bias.astype("float32")])


# retinanet-train on tiny images from random weights (test_train, test_labelimg_layout).
TINY_TRAIN_ARGS = [
    "--weights",
    "none",
    "--image-min-side",
    "96",
    "--image-max-side",
    "128",
    "--quiet",
]

# Six anchors per location instead of nine: a converted model decodes correctly only if the
# converter reads the anchors from the snapshot's metadata.
ANCHORS = AnchorParameters(ratios=(0.5, 2.0), scales=(1.0, 1.4, 1.8))
MIN_SIDE, MAX_SIDE = 96, 128


def small_snapshot(path):
    """A 3-class training snapshot at ``path`` (small FPN and heads, random backbone) whose
    classification head gives a spread of confident scores; returns ``(path, model, batch)``."""
    keras.utils.set_random_seed(3)
    model = models.retinanet_model(
        3,
        weights=None,
        anchor_parameters=ANCHORS,
        pyramid_feature_size=32,
        classification_feature_size=32,
        regression_feature_size=32,
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    batch, _ = prepare_batch([image], MIN_SIDE, MAX_SIDE)
    # The untrained backbone's features are tiny: rescale each output channel of the
    # classification head to logits of mean -3 and std 1.5 on this image, so that a few
    # dozen (anchor, class) pairs score above 0.5.
    levels = [f"P{level}" for level in ANCHORS.pyramid_levels]
    features = keras.Model(model.inputs, [model.get_layer(n).output for n in levels])([batch])
    head = model.get_layer("classification_submodel")
    layer = head.get_layer("pyramid_classification")
    raw = keras.Model(head.inputs, layer.output)
    logits = np.concatenate([np.asarray(raw(f)).reshape(-1, layer.filters) for f in features])
    kernel, bias = layer.get_weights()
    factor = 1.5 / logits.std(axis=0)
    bias = -3.0 - factor * (logits.mean(axis=0) - bias)
    layer.set_weights([kernel * factor, bias.astype("float32")])
    metadata = {
        "format_version": 1,
        "classes": ["a", "b", "c"],
        "num_classes": 3,
        "anchor_parameters": ANCHORS.to_dict(),
        "image_min_side": MIN_SIDE,
        "image_max_side": MAX_SIDE,
        "model": "training",
    }
    models.save_model(model, str(path), metadata=metadata)
    return path, model, batch


def rounding_perturbed(batch: np.ndarray, seed: int, relative: float = 1e-6) -> np.ndarray:
    """``batch`` moved by rounding-sized noise, ``x * (1 + relative * n)`` with
    ``n ~ N(0, 1)`` (1e-7 is about one float32 unit in the last place, 1e-6 about ten): how
    far a network's outputs move on it measures how much that network amplifies rounding.
    Deep untrained networks amplify it by 1e4 and more (a random resnet101_lite with
    statistics from one 96 px image: 1e-7 in, 5e-3 out), so two correct computations of
    them, folded and unfolded or Keras and TFLite, differ by that much."""
    noise = np.random.default_rng(seed).standard_normal(batch.shape)
    return (batch * (1 + relative * noise)).astype(batch.dtype)


def rounding_change(
    model: keras.Model, batch: np.ndarray, relative: float = 1e-7, draws: int = 3
) -> list[float]:
    """Per output of ``model``, its largest change on :func:`rounding_perturbed` inputs,
    relative to that output's largest magnitude."""
    reference = [np.asarray(o, np.float64) for o in model.predict_on_batch(batch)]
    changes = [0.0] * len(reference)
    for seed in range(draws):
        moved = model.predict_on_batch(rounding_perturbed(batch, seed, relative))
        for index, (ours, theirs) in enumerate(zip(moved, reference, strict=True)):
            scale = max(np.abs(theirs).max(), np.finfo(np.float32).tiny)
            change = np.abs(np.asarray(ours) - theirs).max() / scale
            changes[index] = max(changes[index], float(change))
    return changes
