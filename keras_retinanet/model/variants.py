"""Named model variants: every architectural choice in which other RetinaNets differ from ours.

A variant is one frozen :class:`ModelVariant`. The builders (:func:`keras_retinanet.model.retinanet.
retinanet_model`, :func:`~keras_retinanet.models.retinanet_box`, the data loader's anchors and
box targets) read it; none of them grows a keyword argument per quirk. The variant's name is
stored in a snapshot's metadata (``"variant"``), so a file rebuilds its own model, as
KerasHub's presets and detectron2's configs do.

The variants, each checked against its source's code (``tests/test_convert_*.py`` compare the
outputs with the real packages):

- ``"retinanet"``: this package's own (keras.applications ResNet, fizyr's FPN, corner box
  coding, anchors centred on cells). The default. It trains with torchvision's thresholds
  (ignored from 0.4 to 0.5) and low-quality matches, but each promoted anchor goes to the box
  that needs it, not to its own best box (:mod:`keras_retinanet.model.targets`); with fizyr's
  box loss (smooth L1, sigma 3, on corner deltas) and normalisation (the batch's positives);
  and, unlike fizyr, with the padding supervised as background; batches padded to 32.
- ``"fizyr"``: fizyr keras-retinanet 1.0.0 with keras-resnet 0.1.0, the published COCO
  snapshot's code: keras-resnet's stem pools with ``padding="same"`` (keras.applications pads
  1 then pools, so on even sizes its windows sit one pixel earlier), BatchNormalization
  epsilon 1e-5 (keras.applications: 1.001e-5), convolutions without bias, boxes clipped to
  ``[0, W - 1]``, images resized by ``cv2.resize(fx=scale)``, and no per-level pre-NMS budget.
  Trains as fizyr: no low-quality matches, ignored strictly above 0.4, anchors centred
  outside the image ignored, smooth L1 and focal over the batch's positives; batches padded to
  their largest image only.
- ``"fizyr_keras_resnet_0_2"``: the same with keras-resnet 0.2.0 (what fizyr 1.0.0 installs),
  whose 7x7 stem convolution pads ``"same"`` too.
- ``"torchvision_v1"`` / ``"torchvision_v2"``: ``retinanet_resnet50_fpn`` and
  ``retinanet_resnet50_fpn_v2``: ResNet v1.5 (stride in the 3x3 convolution), symmetric
  zero padding everywhere (TensorFlow's ``"same"`` pads stride-2 convolutions only after),
  P6 from P5 (v1) or C5 (v2), GroupNorm(32) in v2's heads, centre/log-size box coding with
  weights (1, 1, 1, 1) and size deltas clamped at log(1000 / 16), anchors with rounded
  corners centred at ``i * stride`` where the stride is ``padded_size // feature_size``,
  integer anchor sizes (32, 40, 50 on P3), and RGB / 255 input normalised by ImageNet's
  mean and std (a layer inside the model maps this package's caffe-style input to it).
  Train as torchvision: ``Matcher(0.5, 0.4, allow_low_quality_matches=True)``, L1 (v1) or
  GIoU (v2) box loss, each image normalised by its own positives; batches padded to 32.

- ``"lite"``: ours with a thin pyramid and heads for the mobile backbones (depthwise-separable
  3x3 convolutions, 64 channels, 3 hidden layers per head, EfficientDet-D0's widths); every
  backbone family has a ``_lite`` preset with it (``mobilenet_v3_large_lite``).

``tests/test_training_equivalence.py`` checks the training side against the real packages.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from keras_retinanet.model.normalisation import padding_value
from keras_retinanet.model.settings import DEFAULT_PAD_MULTIPLE

# keras.applications' ResNets; keras-resnet and torchvision use PyTorch's default 1e-5.
APPLICATIONS_BN_EPSILON = 1.001e-5


@dataclasses.dataclass(frozen=True)
class ModelVariant:
    """One RetinaNet architecture. Field values are strings so a variant reads as a config.

    The last three fields are training choices: ``retinanet-train`` fine-tunes a converted model
    as its source trained it (``tests/test_training_equivalence.py`` compares targets, losses and
    gradients with the real packages).

    Attributes:
        name: the key in :data:`VARIANTS`.
        backbone: ``"applications"`` (keras.applications' ResNets, weights by name) or
            ``"resnet"`` (:mod:`keras_retinanet.model.resnet`, every padding explicit).
        stem_conv: the 7x7/2 stem convolution: ``"pad"`` (zero-pad 3 on every side) or
            ``"same"`` (TensorFlow's ``"same"``: on an even size 2 before, 3 after; keras-resnet
            0.2.0).
        stem_pool: ``"pad"`` (zero-pad 1, 3x3/2 max pool) or ``"same"`` (TensorFlow's
            ``"same"`` max pool: on an even size it pads only after).
        stride_in: where a bottleneck's stride sits: ``"1x1"`` (ResNet v1, keras-resnet,
            keras.applications) or ``"3x3"`` (ResNet v1.5, torchvision).
        bn_epsilon: the backbone BatchNormalization's epsilon.
        p6_from: ``"C5"`` (RetinaNet paper, fizyr, torchvision v2) or ``"P5"`` (torchvision v1).
        pyramid_padding: stride-2 convs of P6/P7: ``"same"`` or ``"symmetric"`` (pad 1 on
            every side, as PyTorch's ``padding=1``).
        head_norm: ``"none"`` or ``"group_norm"`` (GroupNorm(32) after each hidden conv of
            both heads, whose convs then have no bias).
        conv: the 3x3 convolutions of the pyramid (P3..P7) and both heads: ``"full"`` or
            ``"separable"`` (depthwise 3x3 then pointwise 1x1, as FPNLite and EfficientDet).
        pyramid_channels: the pyramid's channels (256: the paper; 64: EfficientDet-D0).
        head_channels: the channels of the heads' hidden convolutions.
        head_depth: hidden convolutions per head (4: the paper; 3: EfficientDet-D0).
        box_coder: ``"corners"`` (fizyr: corner offsets over the anchor size, normalised by
            std 0.2) or ``"centre_size"`` (torchvision: centre offsets over the anchor size and
            log size ratios, size deltas clamped at log(1000 / 16)).
        anchor_rule: ``"centred"`` (cell ``(i, j)`` centred at ``(j + 0.5) * stride``) or
            ``"torchvision"`` (corners rounded, centred at ``j * stride`` with the stride
            ``input_size // feature_size`` per axis, sizes truncated to integers).
        input_normalisation: ``"caffe"`` (BGR minus the ImageNet mean, what this package's
            loaders produce) or ``"torch"`` (RGB / 255, minus mean, over std), applied by a
            layer at the model's input, so every model takes caffe-style input.
        clip: ``"size"`` (boxes clipped to ``[0, W]``) or ``"size_minus_one"`` (``[0, W-1]``).
        resize: how images are resized before the network
            (:func:`keras_retinanet.preprocessing.image.resize_image`): ``"area"`` (ours:
            rounded size, area averaging when shrinking), ``"linear"`` (fizyr: OpenCV bilinear
            by the scale factor, on the float image) or ``"torchvision"`` (size rounded down,
            bilinear without antialias on the float image, a scale per axis).
        pre_nms_top_k_per_level: the default per-level candidate budget of the inference
            model (None: none, as fizyr).
        pad_multiple: a batch is padded to its largest image rounded up to a multiple of this,
            in training and at inference (the detection settings' ``"auto"``): 32 for ours and
            torchvision's (``size_divisible=32``); 1 for fizyr, which pads a batch to its
            largest image only, and one image not at all.
        matcher: which anchors learn which box
            (:func:`keras_retinanet.model.targets.match_anchors`): ``"retinanet"`` (ours: low
            quality matches for the box that needs them), ``"torchvision"`` (``Matcher(0.5, 0.4,
            allow_low_quality_matches=True)``) or ``"fizyr"`` (none; anchors centred outside the
            image ignored).
        box_loss: ``"smooth_l1"`` (sigma 3 on the coder's deltas, fizyr and ours), ``"l1"``
            (torchvision v1, on centre/size deltas) or ``"giou"`` (torchvision v2, generalised
            IoU of the decoded box with its target).
        loss_normalisation: ``"batch"`` (each loss summed over the batch, over the batch's
            positive anchors: fizyr and ours) or ``"image"`` (each image's sum over its own
            positives, at least 1, then the mean over images: torchvision).
    """

    name: str
    backbone: str = "applications"
    stem_conv: str = "pad"
    stem_pool: str = "pad"
    stride_in: str = "1x1"
    bn_epsilon: float = APPLICATIONS_BN_EPSILON
    p6_from: str = "C5"
    pyramid_padding: str = "same"
    head_norm: str = "none"
    conv: str = "full"
    pyramid_channels: int = 256  # Lin et al. 2017, sec. 4
    head_channels: int = 256
    head_depth: int = 4
    box_coder: str = "corners"
    anchor_rule: str = "centred"
    input_normalisation: str = "caffe"
    clip: str = "size"
    resize: str = "area"
    pre_nms_top_k_per_level: int | None = 1000  # Lin et al. 2017, sec. 4.1
    pad_multiple: int = DEFAULT_PAD_MULTIPLE
    # Ours: fizyr's box loss and normalisation, torchvision's thresholds (ignore from 0.4 on)
    # and low-quality matches, but for the box that needs them.
    matcher: str = "retinanet"
    box_loss: str = "smooth_l1"
    loss_normalisation: str = "batch"

    def __post_init__(self) -> None:
        choices = {
            "backbone": ("applications", "resnet"),
            "stem_conv": ("pad", "same"),
            "stem_pool": ("pad", "same"),
            "stride_in": ("1x1", "3x3"),
            "p6_from": ("C5", "P5"),
            "pyramid_padding": ("same", "symmetric"),
            "head_norm": ("none", "group_norm"),
            "conv": ("full", "separable"),
            "box_coder": ("corners", "centre_size"),
            "anchor_rule": ("centred", "torchvision"),
            "input_normalisation": ("caffe", "torch"),
            "clip": ("size", "size_minus_one"),
            "resize": ("area", "linear", "torchvision"),
            "matcher": ("retinanet", "torchvision", "fizyr"),
            "box_loss": ("smooth_l1", "l1", "giou"),
            "loss_normalisation": ("batch", "image"),
        }
        for field, allowed in choices.items():
            if getattr(self, field) not in allowed:
                raise ValueError(
                    f"model variant {self.name!r}: {field} must be one of {allowed}, "
                    f"got {getattr(self, field)!r}"
                )
        for field in ("pyramid_channels", "head_channels", "head_depth"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"model variant {self.name!r}: {field} must be >= 1")
        if int(self.pad_multiple) < 1:
            raise ValueError(f"model variant {self.name!r}: pad_multiple must be >= 1")
        if self.box_loss == "giou" and self.box_coder != "centre_size":
            raise ValueError(
                f"model variant {self.name!r}: the GIoU loss decodes centre/size deltas; use "
                "box_coder='centre_size'"
            )
        if self.backbone == "applications" and (self.stem_pool != "pad" or self.stride_in != "1x1"):
            raise ValueError(
                f"model variant {self.name!r}: keras.applications' ResNet has a padded stem "
                "pool and its stride in the 1x1 conv; use backbone='resnet' for others"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form for snapshot metadata."""
        return dataclasses.asdict(self)

    def pad_value(self) -> Any:
        """The caffe-style value of a padding pixel: 0 (the mean colour) for caffe input; for
        torch input the value :class:`~keras_retinanet.model.layers.NormalizeInput` maps to 0, as
        PyTorch pads its normalised batch with zeros."""
        return padding_value(self.input_normalisation)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ModelVariant:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: an unknown field (the message lists the known ones).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        if "name" in config and config["name"] in VARIANTS:
            # Snapshots from before the training fields existed take them from their variant.
            base = VARIANTS[config["name"]].to_dict()
            config = {**{k: base[k] for k in _TRAINING_FIELDS}, **config}
        unknown = set(config) - known
        if unknown:
            raise ValueError(
                f"unknown model variant field(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(**config)


DEFAULT = ModelVariant("retinanet")

_FIZYR = ModelVariant(
    "fizyr",
    backbone="resnet",
    stem_pool="same",
    bn_epsilon=1e-5,
    clip="size_minus_one",
    resize="linear",
    pre_nms_top_k_per_level=None,
    pad_multiple=1,
    matcher="fizyr",
)
_TORCHVISION_V1 = ModelVariant(
    "torchvision_v1",
    backbone="resnet",
    stride_in="3x3",
    bn_epsilon=1e-5,
    p6_from="P5",
    pyramid_padding="symmetric",
    box_coder="centre_size",
    anchor_rule="torchvision",
    input_normalisation="torch",
    resize="torchvision",
    matcher="torchvision",
    box_loss="l1",
    loss_normalisation="image",
)

# Ours with a thin pyramid and thin heads, for the mobile backbones: EfficientDet-D0's widths
# (64 channels, 3 hidden layers per head; Tan et al. 2020, table 1) and depthwise-separable 3x3
# convolutions (EfficientDet, SSD FPNLite). At 512x512 the heads and pyramid of the default
# variant cost about 50 GFLOP; these about 1 (benchmarks/bench_backbones.py measures them).
LITE = dataclasses.replace(
    DEFAULT, name="lite", conv="separable", pyramid_channels=64, head_channels=64, head_depth=3
)

VARIANTS: dict[str, ModelVariant] = {
    "retinanet": DEFAULT,
    "lite": LITE,
    "fizyr": _FIZYR,
    # fizyr 1.0.0 requires keras-resnet 0.2.0, whose stem convolution pads "same": snapshots
    # users trained with it (the published COCO file predates it and uses 0.1.0).
    "fizyr_keras_resnet_0_2": dataclasses.replace(
        _FIZYR, name="fizyr_keras_resnet_0_2", stem_conv="same"
    ),
    "torchvision_v1": _TORCHVISION_V1,
    # v2: P6 from C5, GroupNorm(32) in both heads and the GIoU box loss; all else as v1.
    "torchvision_v2": dataclasses.replace(
        _TORCHVISION_V1,
        name="torchvision_v2",
        p6_from="C5",
        head_norm="group_norm",
        box_loss="giou",
    ),
}


# Fields a snapshot written before they existed lacks: it gets its named variant's.
_TRAINING_FIELDS = ("pad_multiple", "matcher", "box_loss", "loss_normalisation")


def get_variant(variant: str | ModelVariant | dict | None) -> ModelVariant:
    """A :class:`ModelVariant` from its name, itself, its dict form, or None (the default).

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if variant is None:
        return DEFAULT
    if isinstance(variant, ModelVariant):
        return variant
    if isinstance(variant, dict):
        return ModelVariant.from_dict(variant)
    if variant not in VARIANTS:
        raise ValueError(f"unknown model variant {variant!r}; choose one of {sorted(VARIANTS)}")
    return VARIANTS[variant]


def variant_from_metadata(metadata: dict) -> ModelVariant:
    """The variant a snapshot records (its full dict, so a file keeps working if a named
    variant's definition changes); snapshots from before variants existed are the default."""
    return get_variant(metadata.get("variant"))
