"""Untrained models with detections worth comparing (shared by test_export and test_fold)."""

from __future__ import annotations

import keras
import numpy as np


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
        kernel, bias = last.get_weights()
        factor = std / outputs.std(axis=0)
        if mean is not None:
            bias = mean - factor * (outputs.mean(axis=0) - bias)
        last.set_weights([kernel * factor, bias.astype("float32")])
