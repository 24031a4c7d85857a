"""The pinned recipe of ``pre_model_tier.keras``: a miniature RetinaNet that uses every class
the package registers for saved models (UpsampleLike, Anchors, RegressBoxes, ClipBoxes,
NormalizeInput, FilterDetections, and the compiled FocalLoss / SmoothL1Loss), saved with the
package's metadata record by the code *before* the model tier existed (commit b9f2fbe^,
when these classes lived in ``keras_retinanet.layers`` / ``keras_retinanet.losses``).

tests/test_layout.py loads the committed file with today's code and compares its outputs with
the ones recorded in its metadata. Run from a checkout of that commit to rebuild it:

    python tests/data/make_pre_model_tier.py tests/data/pre_model_tier.keras
"""

from __future__ import annotations

import sys

import keras
import numpy as np

from keras_retinanet import layers, losses, models


def build() -> keras.Model:
    keras.utils.set_random_seed(0)
    image = keras.Input((None, None, 3), name="image")
    x = layers.NormalizeInput(name="normalize")(image)
    c3 = keras.layers.Conv2D(4, 3, strides=8, padding="same", name="c3")(x)
    c4 = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c4")(c3)
    p3 = keras.layers.Add(name="p3")([c3, layers.UpsampleLike(name="up")([c4, c3])])
    outputs = {"regression": [], "classification": []}
    anchors = []
    for level, (feature, size, stride) in enumerate(((p3, 32, 8), (c4, 64, 16))):
        regression = keras.layers.Conv2D(4, 3, padding="same", name=f"reg{level}")(feature)
        logits = keras.layers.Conv2D(
            2,
            3,
            padding="same",
            bias_initializer=keras.initializers.Constant(-1.0),
            name=f"cls{level}",
        )(feature)
        outputs["regression"].append(keras.layers.Reshape((-1, 4))(regression))
        probabilities = keras.layers.Activation("sigmoid")(logits)
        outputs["classification"].append(keras.layers.Reshape((-1, 2))(probabilities))
        anchors.append(
            layers.Anchors(size=size, stride=stride, ratios=(1.0,), scales=(1.0,))(feature)
        )
    regression = keras.layers.Concatenate(axis=1, name="regression")(outputs["regression"])
    classification = keras.layers.Concatenate(axis=1, name="classification")(
        outputs["classification"]
    )
    all_anchors = keras.layers.Concatenate(axis=1)(anchors)
    boxes = layers.RegressBoxes(name="boxes")([all_anchors, regression])
    boxes = layers.ClipBoxes(name="clipped")([image, boxes])
    detections = layers.FilterDetections(score_threshold=0.1, name="filtered_detections")(
        [boxes, classification]
    )
    model = keras.Model(image, [regression, classification, *detections], name="mini")
    model.compile(
        optimizer="adam",
        loss=[losses.smooth_l1(), losses.focal(), None, None, None],
    )
    return model


def sample_input() -> np.ndarray:
    return np.random.default_rng(0).normal(0, 40, (1, 64, 96, 3)).astype(np.float32)


def main(path: str) -> None:
    model = build()
    _, _, boxes, scores, labels = model.predict_on_batch(sample_input())
    keep = np.asarray(labels)[0] >= 0
    metadata = {
        "recipe": "tests/data/make_pre_model_tier.py",
        "classes": ["a", "b"],
        "num_classes": 2,
        "expected": {
            "boxes": np.asarray(boxes)[0][keep].round(4).tolist(),
            "scores": np.asarray(scores)[0][keep].round(6).tolist(),
            "labels": np.asarray(labels)[0][keep].tolist(),
        },
    }
    models.save_model(model, path, metadata=metadata)


if __name__ == "__main__":
    main(sys.argv[1])
