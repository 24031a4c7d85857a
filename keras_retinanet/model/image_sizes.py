"""Run an inference model knowing each image's size inside the padded batch.

The inference model (:func:`keras_retinanet.model.retinanet.retinanet_box`) takes the padded
batch alone and clips its boxes to the batch's canvas. Boxes that reach into the padding would
then meet NMS at their canvas size and be cut to the image only afterwards, so two boxes that
overlap enough in the image could both survive, and the result would depend on how much
padding the batch adds. :func:`sized_detector` builds, from the same layers and weights, the
model with a second input, each image's ``(height, width)``, whose boxes are clipped to their
image before NMS, as torchvision clips to the resized image. :func:`predict_sized` is what
:func:`keras_retinanet.inference.detect`, the evaluation and the exports call.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_retinanet.model import layers as layers_lib

SIZES_INPUT = "image_sizes"


def sized_detector(model: Any) -> keras.Model | None:
    """The inference ``model`` with a second input ``image_sizes`` ``(B, 2)`` float32
    ``(height, width)``, boxes clipped to them before NMS; None for a model that is not a
    ``retinanet_box`` graph (no ``clipped_boxes``/``filtered_detections`` layers). Built once
    per model and kept on it; it shares the model's layers and weights.
    """
    cached = getattr(model, "_sized_detector", None)
    if cached is not None:
        return cached
    try:
        clip = model.get_layer("clipped_boxes")
        filtered = model.get_layer("filtered_detections")
    except (AttributeError, ValueError):
        return None
    # The inputs of each layer's call in *this* model's graph: a layer shared with another
    # model (clone_model keeps some layer objects) has other calls, and its first is not ours.
    clip_inputs, filter_inputs = _inputs_in(model, clip), _inputs_in(model, filtered)
    if clip_inputs is None or filter_inputs is None:
        return None
    image, boxes = clip_inputs[0], clip_inputs[1]
    sizes = keras.Input((2,), name=SIZES_INPUT, dtype="float32")
    clipped = layers_lib.ClipBoxes(clip=clip.clip, name="clipped_to_image")([image, boxes, sizes])
    outputs = filtered([clipped, *filter_inputs[1:]])
    sized = keras.Model([model.inputs[0], sizes], list(outputs), name=f"{model.name}_sized")
    for attribute in ("variant", "detection_settings"):
        if hasattr(model, attribute):
            setattr(sized, attribute, getattr(model, attribute))
    if getattr(model, "jit_compile", None) is not None:
        sized.jit_compile = model.jit_compile
    # Kept outside Keras' attribute tracking, so that saving the model does not walk it.
    object.__setattr__(model, "_sized_detector", sized)
    return sized


def _inputs_in(model: Any, layer: Any) -> list | None:
    """The input tensors of ``layer``'s call inside ``model``'s graph, or None."""
    for nodes in getattr(model, "_nodes_by_depth", {}).values():
        for node in nodes:
            if node.operation is layer:
                return list(node.input_tensors)
    return None


def predict_sized(model: Any, batch: np.ndarray, sizes: Any) -> list[Any]:
    """``model``'s detections on ``batch``, boxes clipped to ``sizes`` before NMS.

    Args:
        model: an inference model, or a wrapper with ``predict_sized(batch, sizes)`` (the
            evaluation's timer, the multi-worker predictor); any other object with only
            ``predict_on_batch`` is called on the batch alone.
        batch: ``(B, H, W, 3)`` float32 padded network input.
        sizes: ``(B, 2)`` ``(height, width)`` of each image in the batch, in network pixels.

    Returns:
        The model's outputs: ``boxes`` ``(B, D, 4)``, ``scores`` ``(B, D)``, ``labels``
        ``(B, D)``.
    """
    sizes = np.asarray(sizes, dtype=np.float32).reshape(-1, 2)
    if hasattr(model, "predict_sized"):
        return model.predict_sized(batch, sizes)
    sized = sized_detector(model) if isinstance(model, keras.Model) else None
    if sized is None:
        return model.predict_on_batch(batch)
    return sized.predict_on_batch([batch, sizes])
