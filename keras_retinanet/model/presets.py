"""The one registry of named models: backbones and pretrained detectors, as KerasHub's presets.

A :class:`Preset` names a backbone family (its ``keras.applications`` constructor and the layers
tapped for C3, C4, C5), the model variant (:data:`~keras_retinanet.model.variants.VARIANTS`, the
architecture configurations presets refer to), where its weights come from (URL and hash) and,
for a detector, its class names. ``retinanet-train --backbone NAME``, ``retinanet-convert
--pretrained NAME`` and :func:`keras_retinanet.models.from_preset` read it; the backbone table
(:data:`~keras_retinanet.model.backbones.BACKBONES`) and the table of pretrained detectors
(:data:`keras_retinanet.convert.PRETRAINED`) are views of it. A new backbone or detector is one
entry here.
"""

from __future__ import annotations

import dataclasses

from keras_retinanet.model.backbone_families import BACKBONE_FAMILIES


@dataclasses.dataclass(frozen=True)
class Weights:
    """Where a preset's weights come from.

    Attributes:
        source: ``"keras.applications"`` (ImageNet backbone weights, fetched by Keras itself),
            ``"fizyr"`` or ``"torchvision"`` (a published detector, fetched and converted by
            :func:`keras_retinanet.convert.download_pretrained`).
        url: the publisher's address of the file.
        file_hash: the expected hash of the file: MD5 for keras.applications' files (as Keras
            checks them), the leading hex digits of the SHA-256 for torchvision's (its file names
            carry them); None where the publisher gives none.
        arch: torchvision's architecture, ``"v1"`` or ``"v2"``; None otherwise.
    """

    source: str
    url: str
    file_hash: str | None = None
    arch: str | None = None


@dataclasses.dataclass(frozen=True)
class Preset:
    """One named model.

    Attributes:
        name: the registry key.
        kind: ``"backbone"`` (ImageNet features for a detector trained here) or ``"detector"``
            (a whole published RetinaNet).
        backbone: the backbone family: a key of :data:`BACKBONE_FAMILIES`.
        variant: the model variant (a key of ``VARIANTS``).
        weights: where the weights come from.
        classes: the class names of a detector (None for a backbone).
        coco_ap: a detector's published COCO val2017 box AP (IoU 0.50:0.95), in percent.
        note: licence and provenance, in a line.
    """

    name: str
    kind: str
    backbone: str
    variant: str
    weights: Weights
    classes: tuple[str, ...] | None = None
    coco_ap: float | None = None
    note: str = ""


# The 80 COCO categories in the order of their ids (1..90 with 10 ids unused); fizyr's COCO
# snapshot labels them 0..79 in this order.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse",
    "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier",
    "toothbrush",
)  # fmt: skip
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)


def coco_classes_by_id() -> list[str]:
    """torchvision's 91 COCO labels: index = COCO category id, 0 the background and the
    unused ids ``"N/A"`` (its COCO models have 91 outputs, labels 1..90)."""
    names = ["__background__"]
    remaining = iter(COCO_CLASSES)
    for category_id in range(1, 91):
        names.append("N/A" if category_id in COCO_UNUSED_IDS else next(remaining))
    return names


def _backbone_presets() -> list[Preset]:
    """One preset per backbone family with ImageNet weights from keras.applications, and its
    ``_lite`` twin: the same backbone under the thin pyramid and heads of the ``"lite"``
    variant."""
    presets = []
    for name, family in BACKBONE_FAMILIES.items():
        weights = Weights("keras.applications", family.url, family.file_hash)
        note = f"keras.applications {family.constructor}, ImageNet"
        presets.append(Preset(name, "backbone", name, "retinanet", weights, note=note))
        lite_note = f"{note}; thin depthwise-separable pyramid and heads"
        presets.append(Preset(f"{name}_lite", "backbone", name, "lite", weights, note=lite_note))
    return presets


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        *_backbone_presets(),
        Preset(
            "fizyr_resnet50_coco",
            "detector",
            "resnet50",
            "fizyr",
            Weights(
                "fizyr",
                "https://github.com/fizyr/keras-retinanet/releases/download/0.5.1/"
                "resnet50_coco_best_v2.1.0.h5",
            ),
            COCO_CLASSES,
            35.0,
            "fizyr keras-retinanet release 0.5.1 (Apache-2.0 project); trained on COCO 2017",
        ),
        Preset(
            "torchvision_v1_coco",
            "detector",
            "resnet50",
            "torchvision_v1",
            Weights(
                "torchvision",
                "https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth",
                "eeacb38b",
                "v1",
            ),
            tuple(coco_classes_by_id()),
            36.4,
            "torchvision RetinaNet_ResNet50_FPN_Weights.COCO_V1 (BSD-3 project); trained on COCO",
        ),
        Preset(
            "torchvision_v2_coco",
            "detector",
            "resnet50",
            "torchvision_v2",
            Weights(
                "torchvision",
                "https://download.pytorch.org/models/retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
                "5905b1c5",
                "v2",
            ),
            tuple(coco_classes_by_id()),
            41.5,
            "torchvision RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1 (BSD-3 project); trained on "
            "COCO",
        ),
    )
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        ValueError: an unknown name; the message lists the presets by kind.
    """
    if name not in PRESETS:
        listed = "; ".join(
            f"{kind}s: {', '.join(sorted(presets_of(kind)))}" for kind in ("backbone", "detector")
        )
        raise ValueError(f"unknown preset {name!r} ({listed})")
    return PRESETS[name]


def presets_of(kind: str) -> dict[str, Preset]:
    """The presets of one kind (``"backbone"`` or ``"detector"``), by name."""
    return {name: preset for name, preset in PRESETS.items() if preset.kind == kind}
