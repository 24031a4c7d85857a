"""RetinaNet training model, the inference wrapper, and loading snapshots.

``retinanet_model`` returns the training model (ResNet + FPN + shared subnets) with outputs
``regression`` ``(B, N, 4)`` and ``classification`` ``(B, N, K)``; ``retinanet_box`` wraps it
with anchors, box decoding, clipping and NMS so that
``boxes, scores, labels = prediction_model.predict_on_batch(images)`` works.

Snapshot files and their metadata record are written and read by :mod:`keras_retinanet.saving`
(re-exported here: ``save_model``, ``read_metadata``, ``write_metadata``, ``METADATA_KEY``);
:func:`load_model` loads one and can convert a training model for inference.
"""

from __future__ import annotations

import os
from typing import Any

import keras

from keras_retinanet import backbones as backbones_lib
from keras_retinanet import layers as layers_lib
from keras_retinanet import losses as _losses  # noqa: F401  (registers what snapshots compile)
from keras_retinanet.anchors import AnchorParameters
from keras_retinanet.boxes import DEFAULT_MEAN, DEFAULT_STD
from keras_retinanet.saving import (  # noqa: F401  (re-exported)
    METADATA_KEY,
    _check_model_path,
    read_metadata,
    save_model,
    write_metadata,
)

_SUPPORTED_LEVELS = (3, 4, 5, 6, 7)


def _conv(filters: int, name: str, strides: int = 1, kernel_size: int = 3, **kwargs: Any) -> Any:
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", name=name, **kwargs
    )


def _subnet_trunk(x: Any, feature_size: int, prefix: str) -> Any:
    """The four 3x3 conv + ReLU layers that both subnets start with (``{prefix}_0..3``)."""
    for i in range(4):
        x = _conv(
            feature_size,
            f"{prefix}_{i}",
            activation="relu",
            kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.01),
            bias_initializer="zeros",
        )(x)
    return x


def classification_subnet(
    num_classes: int,
    num_anchors: int,
    pyramid_feature_size: int = 256,
    feature_size: int = 256,
    prior_probability: float = 0.01,  # Lin et al. 2017, sec. 4.1: stable start with focal loss
    name: str = "classification_submodel",
) -> keras.Model:
    """Four 3x3 convs + ReLU, then a 3x3 conv to ``K * A`` with a sigmoid.

    Returns a model mapping ``(B, H, W, pyramid_feature_size)`` to ``(B, H * W * A, K)``
    probabilities (float32 also under mixed precision).
    """
    inputs = keras.Input(shape=(None, None, pyramid_feature_size))
    x = _subnet_trunk(inputs, feature_size, "pyramid_classification")
    x = _conv(
        num_classes * num_anchors,
        "pyramid_classification",
        kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.01),
        bias_initializer=keras.initializers.Constant(layers_lib.prior_bias(prior_probability)),
    )(x)
    x = keras.layers.Reshape((-1, num_classes), name="pyramid_classification_reshape")(x)
    x = keras.layers.Activation("sigmoid", dtype="float32", name="pyramid_classification_sigmoid")(
        x
    )
    return keras.Model(inputs=inputs, outputs=x, name=name)


def regression_subnet(
    num_values: int,
    num_anchors: int,
    pyramid_feature_size: int = 256,
    feature_size: int = 256,
    name: str = "regression_submodel",
) -> keras.Model:
    """Four 3x3 convs + ReLU, then a 3x3 conv to ``4 * A``.

    Returns a model mapping ``(B, H, W, pyramid_feature_size)`` to ``(B, H * W * A, 4)``
    float32 deltas.
    """
    inputs = keras.Input(shape=(None, None, pyramid_feature_size))
    x = _subnet_trunk(inputs, feature_size, "pyramid_regression")
    x = _conv(
        num_values * num_anchors,
        "pyramid_regression",
        kernel_initializer=keras.initializers.RandomNormal(mean=0.0, stddev=0.01),
        bias_initializer="zeros",
    )(x)
    x = keras.layers.Reshape((-1, num_values), name="pyramid_regression_reshape")(x)
    x = keras.layers.Activation("linear", dtype="float32", name="pyramid_regression_float32")(x)
    return keras.Model(inputs=inputs, outputs=x, name=name)


def feature_pyramid(c3: Any, c4: Any, c5: Any, feature_size: int = 256) -> dict[int, Any]:
    """FPN of Lin et al. 2017: P3..P5 top-down from C3..C5, P6 on C5, P7 on ReLU(P6).

    Returns:
        ``{level: feature map}`` for levels 3..7, each with ``feature_size`` channels; the map
        of level l has size ``ceil(H / 2**l)``.
    """
    p5 = _conv(feature_size, "C5_reduced", kernel_size=1)(c5)
    p5_upsampled = layers_lib.UpsampleLike(name="P5_upsampled")([p5, c4])
    p5 = _conv(feature_size, "P5")(p5)

    p4 = _conv(feature_size, "C4_reduced", kernel_size=1)(c4)
    p4 = keras.layers.Add(name="P4_merged")([p5_upsampled, p4])
    p4_upsampled = layers_lib.UpsampleLike(name="P4_upsampled")([p4, c3])
    p4 = _conv(feature_size, "P4")(p4)

    p3 = _conv(feature_size, "C3_reduced", kernel_size=1)(c3)
    p3 = keras.layers.Add(name="P3_merged")([p4_upsampled, p3])
    p3 = _conv(feature_size, "P3")(p3)

    # P6 from C5 rather than P5, as in the RetinaNet paper (sec. 4, footnote 2).
    p6 = _conv(feature_size, "P6", strides=2)(c5)
    p7 = keras.layers.Activation("relu", name="C6_relu")(p6)
    p7 = _conv(feature_size, "P7", strides=2)(p7)
    return {3: p3, 4: p4, 5: p5, 6: p6, 7: p7}


def retinanet_model(
    num_classes: int,
    backbone: str = "resnet50",
    weights: str | None = "imagenet",
    freeze_backbone: bool = False,
    anchor_parameters: AnchorParameters | None = None,
    pyramid_feature_size: int = 256,
    classification_feature_size: int = 256,
    regression_feature_size: int = 256,
    prior_probability: float = 0.01,
    freeze_batch_norm: bool | None = None,
    name: str = "retinanet",
) -> keras.Model:
    """The RetinaNet training model.

    Args:
        num_classes: K, number of object classes (no background class).
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"resnet152"``.
        weights: backbone weights: ``"imagenet"`` (downloaded by ``keras.applications``), None,
            or the path of a local ``.h5`` weights file.
        freeze_backbone: make the backbone non-trainable.
        anchor_parameters: anchors; the pyramid levels used are ``log2(strides)`` (3..7 by
            default) and A = ``len(ratios) * len(scales)``.
        pyramid_feature_size: FPN channels.
        classification_feature_size: channels of the classification subnet's hidden convs.
        regression_feature_size: channels of the regression subnet's hidden convs.
        prior_probability: initial foreground probability of every anchor.
        freeze_batch_norm: keep the backbone's BatchNormalization frozen (see
            :func:`keras_retinanet.backbones.backbone_features`). None (default): frozen when
            loading pretrained weights, trained when starting from random weights, where frozen
            statistics (mean 0, variance 1) would leave the 50-layer ResNet unnormalised.
        name: model name.

    Returns:
        A ``keras.Model`` from ``(B, H, W, 3)`` caffe-preprocessed BGR images to
        ``[regression (B, N, 4), classification (B, N, K)]``, N anchors ordered level by level,
        location by location (x fastest), anchor by anchor.

    Raises:
        ValueError: bad ``num_classes``, backbone or anchor levels.
        FileNotFoundError: ``weights`` names a file that does not exist.
    """
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    params = anchor_parameters or AnchorParameters()
    levels = params.pyramid_levels
    if not set(levels) <= set(_SUPPORTED_LEVELS):
        raise ValueError(
            f"anchor strides {params.strides} give pyramid levels {levels}; this model has "
            f"levels {_SUPPORTED_LEVELS} (strides 8..128)"
        )
    if freeze_batch_norm is None:
        freeze_batch_norm = backbones_lib.resolve_weights(weights) is not None
    inputs = keras.Input(shape=(None, None, 3), name="image")
    c3, c4, c5 = backbones_lib.backbone_features(
        inputs,
        backbone=backbone,
        weights=weights,
        freeze_backbone=freeze_backbone,
        freeze_batch_norm=freeze_batch_norm,
    )
    pyramid = feature_pyramid(c3, c4, c5, feature_size=pyramid_feature_size)
    num_anchors = params.num_anchors
    regression_model = regression_subnet(
        4, num_anchors, pyramid_feature_size, regression_feature_size
    )
    classification_model = classification_subnet(
        int(num_classes),
        num_anchors,
        pyramid_feature_size,
        classification_feature_size,
        prior_probability,
    )
    features = [pyramid[level] for level in levels]
    regression = keras.layers.Concatenate(axis=1, name="regression")(
        [regression_model(f) for f in features]
    )
    classification = keras.layers.Concatenate(axis=1, name="classification")(
        [classification_model(f) for f in features]
    )
    return keras.Model(inputs=inputs, outputs=[regression, classification], name=name)


def is_inference_model(model: keras.Model) -> bool:
    """True for a model from :func:`retinanet_box` (outputs boxes, scores, labels)."""
    return any(isinstance(layer, layers_lib.FilterDetections) for layer in model.layers)


def retinanet_box(
    model: keras.Model,
    nms: bool = True,
    class_specific_filter: bool = True,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.05,
    max_detections: int = 300,
    anchor_parameters: AnchorParameters | None = None,
    pre_nms_top_k: int | None = None,  # no cap after the per-level budget
    regression_mean: Any = DEFAULT_MEAN,
    regression_std: Any = DEFAULT_STD,
    name: str = "retinanet_box",
    pre_nms_top_k_per_level: int | None = 1000,  # Lin et al. 2017, sec. 4.1: 1000 per level
    jit_compile: bool | str = "auto",
) -> keras.Model:
    """Wrap a training model with anchors, box decoding, clipping and detection filtering.

    Args:
        model: a model from :func:`retinanet_model` (or loaded from its snapshot).
        nms, class_specific_filter, nms_threshold, score_threshold, max_detections,
            pre_nms_top_k, pre_nms_top_k_per_level: see
            :class:`keras_retinanet.layers.FilterDetections`; with ``pre_nms_top_k_per_level``
            the per-level anchors are passed to it as its level inputs.
        anchor_parameters: the anchors the model was trained with.
        regression_mean, regression_std: the regression target normalisation used in training.
        name: model name.
        jit_compile: XLA for ``predict`` / ``predict_on_batch``: ``"auto"`` leaves Keras'
            choice (on TensorFlow: XLA on GPU, off on CPU-only machines, where it measured
            slower, see ``benchmarks/README.md``), True or False forces it. XLA compiles
            once per input shape, so pad inputs to a few sizes
            (:func:`keras_retinanet.inference.prepare_batch` does). Not saved with the model.

    Returns:
        A ``keras.Model`` from ``(B, H, W, 3)`` preprocessed images to ``boxes`` ``(B, D, 4)``
        (input-image pixels), ``scores`` ``(B, D)`` and ``labels`` ``(B, D)``, sorted by score
        and padded with -1.

    Raises:
        ValueError: ``model`` is already an inference model, or its heads do not match the
            anchor parameters.
    """
    if is_inference_model(model):
        raise ValueError("retinanet_box() got an inference model; pass the training model")
    params = anchor_parameters or AnchorParameters()
    regression_head = model.get_layer("regression_submodel")
    head_anchors = regression_head.get_layer("pyramid_regression").filters // 4
    if head_anchors != params.num_anchors:
        raise ValueError(
            f"the model predicts {head_anchors} anchors per location but the anchor parameters "
            f"give {params.num_anchors} ({len(params.ratios)} ratios x {len(params.scales)} "
            "scales); pass the anchor parameters the model was trained with"
        )
    features = [model.get_layer(f"P{level}").output for level in params.pyramid_levels]
    level_anchors = [
        layers_lib.Anchors(
            size=size,
            stride=stride,
            ratios=params.ratios,
            scales=params.scales,
            name=f"anchors_{i}",
        )(feature)
        for i, (size, stride, feature) in enumerate(zip(params.sizes, params.strides, features))
    ]
    anchors = keras.layers.Concatenate(axis=1, name="anchors")(level_anchors)
    regression, classification = model.outputs[0], model.outputs[1]
    boxes = layers_lib.RegressBoxes(mean=regression_mean, std=regression_std, name="boxes")(
        [anchors, regression]
    )
    boxes = layers_lib.ClipBoxes(name="clipped_boxes")([model.inputs[0], boxes])
    # The per-level anchors tell FilterDetections where each level's rows start; only the
    # per-level selection needs them, so the default graph keeps the two-input call.
    level_inputs = level_anchors if pre_nms_top_k_per_level is not None else []
    detections = layers_lib.FilterDetections(
        nms=nms,
        class_specific_filter=class_specific_filter,
        nms_threshold=nms_threshold,
        score_threshold=score_threshold,
        max_detections=max_detections,
        pre_nms_top_k=pre_nms_top_k,
        pre_nms_top_k_per_level=pre_nms_top_k_per_level,
        name="filtered_detections",
    )([boxes, classification, *level_inputs])
    prediction_model = keras.Model(inputs=model.inputs, outputs=list(detections), name=name)
    if jit_compile != "auto":
        prediction_model.jit_compile = bool(jit_compile)
    return prediction_model


def load_model(
    path: str,
    convert: bool = False,
    anchor_parameters: AnchorParameters | None = None,
    compile: bool = False,
    **filter_kwargs: Any,
) -> keras.Model:
    """Load a training or inference model saved as ``.keras`` or ``.h5``.

    Args:
        path: the model file.
        convert: turn a training model into the inference model (:func:`retinanet_box`); an
            inference model is returned as it is.
        anchor_parameters: anchors for ``convert``; by default those recorded in the file's
            metadata, else the defaults.
        compile: restore the training configuration (optimizer, losses) too.
        **filter_kwargs: passed to :func:`retinanet_box` when converting (``nms_threshold``,
            ``score_threshold``, ``max_detections``, ...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = _check_model_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    model = keras.saving.load_model(path, compile=compile)
    if convert and not is_inference_model(model):
        if anchor_parameters is None:
            recorded = read_metadata(path).get("anchor_parameters")
            anchor_parameters = AnchorParameters.from_dict(recorded) if recorded else None
        model = retinanet_box(model, anchor_parameters=anchor_parameters, **filter_kwargs)
    return model
