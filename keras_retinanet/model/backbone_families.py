"""The backbone families a detector can be built on: ``keras.applications`` networks tapped at
C3, C4, C5 (strides 8, 16, 32), with the input each expects and its ImageNet file.

A family is data, read by :func:`keras_retinanet.model.backbones.backbone_features` and named by
the presets (:mod:`keras_retinanet.model.presets`); a new backbone is one entry here and one
preset. ``tests/test_backbones.py`` checks every entry against ``keras.applications`` itself: the
taps' strides, the weights file it fetches (address and hash), and the input it expects.

Taps name layers of the ``include_top=False`` network. Where ``keras.applications`` leaves the
layer unnamed (its name then depends on how many layers the process made before), a tap names a
neighbour instead: ``"output"`` is the network's output, ``"NAME>"`` the one layer that consumes
layer ``NAME``'s output (MobileNetV3's hard-swish after a named batch normalisation).

Each tap is the last activation at its stride (for VGG, which has none after its last
convolution of a stage, the stage's pooling), so every level sees the deepest features of its
resolution, as fizyr, KerasHub and TF's object-detection API tap these networks.
"""

from __future__ import annotations

import dataclasses
import math

# keras.applications' ImageNet files (the notop ones a detector's backbone loads).
_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"
_EFFICIENTNET = "https://storage.googleapis.com/keras-applications/"

# What a family's network takes, from this package's input (caffe-style BGR minus the ImageNet
# mean): "caffe" (that itself: ResNet, VGG), "rgb" (RGB 0-255; the network normalises inside:
# MobileNetV3, EfficientNet, EfficientNetV2, ConvNeXt), "tf" (RGB scaled to [-1, 1]: ResNetV2,
# MobileNetV2) or "torch" (RGB / 255 normalised by ImageNet's mean and std: DenseNet), as
# keras.applications' preprocess_input of each family computes.
INPUTS = ("caffe", "rgb", "tf", "torch")

_IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class BackboneFamily:
    """One ``keras.applications`` network as a detector's backbone.

    Attributes:
        constructor: the ``keras.applications`` function.
        taps: the layers giving C3, C4, C5 (see the module docstring for ``"output"`` and
            ``"NAME>"``).
        input: what the network takes (one of :data:`INPUTS`); a layer at the detector's input
            maps this package's caffe-style images to it.
        url: the ImageNet notop weights file keras.applications fetches.
        file_hash: the hash keras.applications checks that file with (MD5 or SHA-256); None
            where it checks none.
        loaded_input_scale: a per-channel factor keras.applications puts after the network's
            ``Normalization`` layer when it loads ImageNet weights, and only then
            (EfficientNet B0-B7: ``1 / sqrt(std)`` of ImageNet's RGB std, because the original
            network divided by the variance: tensorflow/tensorflow issue 49930).
            Applied here whenever weights come from a file, ImageNet's or the user's.
    """

    constructor: str
    taps: tuple[str, str, str]
    input: str
    url: str
    file_hash: str | None
    loaded_input_scale: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"{self.constructor}: input must be one of {INPUTS}")


def _resnet(name: str, constructor: str, taps: tuple[str, str, str], md5: str) -> BackboneFamily:
    url = f"{_APPLICATIONS}resnet/{name}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return BackboneFamily(constructor, taps, "tf" if "v2" in name else "caffe", url, md5)


def _efficientnet(suffix: str, md5: str) -> BackboneFamily:
    taps = ("block4a_expand_activation", "block6a_expand_activation", "top_activation")
    url = f"{_EFFICIENTNET}efficientnet{suffix}_notop.h5"
    scale = tuple(1.0 / math.sqrt(std) for std in _IMAGENET_STD_RGB)
    return BackboneFamily(f"EfficientNet{suffix.upper()}", taps, "rgb", url, md5, scale)


def _efficientnet_v2(suffix: str, md5: str) -> BackboneFamily:
    taps = ("block4a_expand_activation", "block6a_expand_activation", "top_activation")
    url = f"{_APPLICATIONS}efficientnet_v2/efficientnetv2-{suffix}_notop.h5"
    return BackboneFamily(f"EfficientNetV2{suffix.upper()}", taps, "rgb", url, md5)


def _densenet(depth: int, md5: str) -> BackboneFamily:
    url = f"{_APPLICATIONS}densenet/densenet{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    taps = ("pool3_relu", "pool4_relu", "relu")
    return BackboneFamily(f"DenseNet{depth}", taps, "torch", url, md5)


def _vgg(depth: int, md5: str) -> BackboneFamily:
    url = f"{_APPLICATIONS}vgg{depth}/vgg{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    taps = ("block3_pool", "block4_pool", "block5_pool")
    return BackboneFamily(f"VGG{depth}", taps, "caffe", url, md5)


def _convnext(size: str, blocks_stage_2: int, sha256: str) -> BackboneFamily:
    prefix = f"convnext_{size}"
    # A block's "identity" layer ends its residual branch; the unnamed Add after it (">") is
    # the block's output, which the next stage's downsampling takes.
    last_of_stage_2 = f"{prefix}_stage_2_block_{blocks_stage_2 - 1}_identity>"
    taps = (f"{prefix}_stage_1_block_2_identity>", last_of_stage_2, "output")
    url = f"{_APPLICATIONS}convnext/{prefix}_notop.h5"
    return BackboneFamily(f"ConvNeXt{size.capitalize()}", taps, "rgb", url, sha256)


def _mobilenet_v3(size: str, taps: tuple[str, str, str], md5: str) -> BackboneFamily:
    url = f"{_APPLICATIONS}mobilenet_v3/weights_mobilenet_v3_{size}_224_1.0_float_no_top_v2.h5"
    return BackboneFamily(f"MobileNetV3{size.capitalize()}", taps, "rgb", url, md5)


# Keys are the registry's names (lower case, as --backbone takes them).
BACKBONE_FAMILIES: dict[str, BackboneFamily] = {
    "resnet50": _resnet(
        "resnet50", "ResNet50", ("conv3_block4_out", "conv4_block6_out", "conv5_block3_out"),
        "4d473c1dd8becc155b73f8504c6f6626",
    ),
    "resnet101": _resnet(
        "resnet101", "ResNet101", ("conv3_block4_out", "conv4_block23_out", "conv5_block3_out"),
        "88cf7a10940856eca736dc7b7e228a21",
    ),
    "resnet152": _resnet(
        "resnet152", "ResNet152", ("conv3_block8_out", "conv4_block36_out", "conv5_block3_out"),
        "ee4c566cf9a93f14d82f913c2dc6dd0c",
    ),
    # ResNetV2 is pre-activation and strides in a stage's last block: C3/C4 are the normalised
    # input of the last block of stages 3/4 (its pre-activation ReLU, still at stride 8/16, all
    # 512/1024 channels), C5 the final post_relu.
    "resnet50_v2": _resnet(
        "resnet50v2", "ResNet50V2",
        ("conv3_block4_preact_relu", "conv4_block6_preact_relu", "post_relu"),
        "fac2f116257151a9d068a22e544a4917",
    ),
    "resnet101_v2": _resnet(
        "resnet101v2", "ResNet101V2",
        ("conv3_block4_preact_relu", "conv4_block23_preact_relu", "post_relu"),
        "c0ed64b8031c3730f411d2eb4eea35b5",
    ),
    "resnet152_v2": _resnet(
        "resnet152v2", "ResNet152V2",
        ("conv3_block8_preact_relu", "conv4_block36_preact_relu", "post_relu"),
        "ed17cf2e0169df9d443503ef94b23b33",
    ),
    # The expansion of the first block at the next stride, as SSDLite taps MobileNetV2.
    "mobilenet_v2": BackboneFamily(
        "MobileNetV2", ("block_6_expand_relu", "block_13_expand_relu", "out_relu"), "tf",
        f"{_APPLICATIONS}mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        None,
    ),
    "mobilenet_v3_small": _mobilenet_v3(
        "small", ("expanded_conv_3_expand_bn>", "expanded_conv_8_expand_bn>", "output"),
        "d3e8ec802a04aa4fc771ee12a9a9b836",
    ),
    "mobilenet_v3_large": _mobilenet_v3(
        "large", ("expanded_conv_6_expand_bn>", "expanded_conv_12_expand_bn>", "output"),
        "07fb09a5933dd0c8eaafa16978110389",
    ),
    "efficientnet_b0": _efficientnet("b0", "50bc09e76180e00e4465e1a485ddc09d"),
    "efficientnet_b1": _efficientnet("b1", "74c4e6b3e1f6a1eea24c589628592432"),
    "efficientnet_b2": _efficientnet("b2", "111f8e2ac8aa800a7a99e3239f7bfb39"),
    "efficientnet_b3": _efficientnet("b3", "af6d107764bb5b1abb91932881670226"),
    "efficientnet_b4": _efficientnet("b4", "ebc24e6d6c33eaebbd558eafbeedf1ba"),
    "efficientnet_b5": _efficientnet("b5", "38879255a25d3c92d5e44e04ae6cec6f"),
    "efficientnet_b6": _efficientnet("b6", "9ecce42647a20130c1f39a5d4cb75743"),
    "efficientnet_b7": _efficientnet("b7", "cbcfe4450ddf6f3ad90b1b398090fe4a"),
    "efficientnet_v2_b0": _efficientnet_v2("b0", "893217f2bb855e2983157299931e43ff"),
    "efficientnet_v2_b1": _efficientnet_v2("b1", "0e80663031ca32d657f9caa404b6ec37"),
    "efficientnet_v2_b2": _efficientnet_v2("b2", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "efficientnet_v2_b3": _efficientnet_v2("b3", "f6abf7b5849ac99a89b50dd3fd532856"),
    "efficientnet_v2_s": _efficientnet_v2("s", "af0682fb74e8c54910f2d4393339c070"),
    "densenet121": _densenet(121, "30ee3e1110167f948a6b9946edeeb738"),
    "densenet169": _densenet(169, "b8c4d4c20dd625c148057b9ff1c1176b"),
    "densenet201": _densenet(201, "c13680b51ded0fb44dff2d8f86ac8bb1"),
    "vgg16": _vgg(16, "6d6bbae143d832006294945121d1f1fc"),
    "vgg19": _vgg(19, "253f8cb515780f3b799900260a226db6"),
    "convnext_tiny": _convnext(
        "tiny", 9, "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"
    ),
    "convnext_small": _convnext(
        "small", 27, "6fc8009faa2f00c1c1dfce59feea9b0745eb260a7dd11bee65c8e20843da6eab"
    ),
}  # fmt: skip
