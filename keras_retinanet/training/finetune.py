"""Fine-tuning from a snapshot of this package (one it trained, or one converted from fizyr or
torchvision by ``retinanet-convert --from``): ``retinanet-train --weights SNAPSHOT``.

The new model is the snapshot's variant and backbone for the new dataset's classes. Every layer
takes the snapshot's weights except the classification subnet's last convolution when the
classes differ: that one starts again at prior 0.01 (Lin et al. 2017, sec. 4.1), since its
outputs mean other classes. BatchNormalization stays frozen, as for any pretrained start.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import keras

from keras_retinanet.convert.common import find_layer
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.files import ModelFileError
from keras_retinanet.model.variants import variant_from_metadata

_CLASS_OUTPUT = "pyramid_classification"


def snapshot_start(weights: str | None) -> dict | None:
    """The metadata of ``weights`` when it is a snapshot of this package, else None (then it
    is ``"imagenet"``, None or a backbone weights file, for ``backbones.backbone_features``)."""
    if not weights or str(weights).lower() in ("imagenet", "none"):
        return None
    path = os.path.expanduser(str(weights))
    if not (os.path.isfile(path) and path.endswith((".keras", ".h5"))):
        return None
    try:
        metadata = models.read_metadata(path)
    except ModelFileError as error:
        if path.endswith(".h5") and "no model_config" in str(error):
            return None  # backbone weights, as keras.applications writes them
        raise  # damaged, another package's, or not a model: the message says what to do
    return metadata if metadata.get("num_classes") else None


def _layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        elif layer.weights:
            yield layer


def fine_tune_model(
    path: str,
    metadata: dict,
    classes: Sequence[str],
    anchor_parameters: AnchorParameters,
    freeze_backbone: bool = False,
) -> keras.Model:
    """A training model for ``classes`` that starts from the snapshot at ``path``.

    Raises:
        ValueError: the snapshot's anchors give another number of anchors per location.
    """
    recorded = metadata.get("anchor_parameters")
    if (
        recorded
        and AnchorParameters.from_dict(recorded).num_anchors != anchor_parameters.num_anchors
    ):
        raise ValueError(
            f"{path} predicts {AnchorParameters.from_dict(recorded).num_anchors} anchors per "
            f"location but the anchor configuration gives {anchor_parameters.num_anchors}; "
            "drop --config to keep the snapshot's anchors"
        )
    source = keras.saving.load_model(path, compile=False)
    model = models.retinanet_model(
        len(classes),
        backbone=metadata.get("backbone", "resnet50"),
        weights=None,
        variant=variant_from_metadata(metadata),
        anchor_parameters=anchor_parameters,
        freeze_backbone=freeze_backbone,
        freeze_batch_norm=True,
    )
    same_classes = list(metadata.get("classes") or []) == list(classes)
    for layer in _layers(model):
        if layer.name == _CLASS_OUTPUT and not same_classes:
            continue  # new classes: keep the fresh prior-0.01 initialisation
        layer.set_weights(find_layer(source, layer.name).get_weights())
    return model


def start_record(path: str, metadata: dict, classes: Sequence[str]) -> dict:
    """What a fine-tuned snapshot's metadata records of where it started."""
    return {
        "path": os.path.abspath(path),
        "variant": variant_from_metadata(metadata).name,
        "classes": list(metadata.get("classes") or []),
        "classification_reinitialised": list(metadata.get("classes") or []) != list(classes),
        "source": metadata.get("source"),
    }
