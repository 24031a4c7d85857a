"""RetinaNet training model, the inference wrapper, and loading snapshots.

``retinanet_model`` returns the training model (ResNet + FPN + shared subnets) with outputs
``regression`` ``(B, N, 4)`` and ``classification`` ``(B, N, K)``; ``retinanet_box`` wraps it
with anchors, box decoding, clipping and NMS so that
``boxes, scores, labels = prediction_model.predict_on_batch(images)`` works.

Snapshot files and their metadata record are written and read by :mod:`keras_retinanet.model.saving`
(re-exported here: ``save_model``, ``read_metadata``, ``write_metadata``, ``METADATA_KEY``);
:func:`load_model` loads one and can convert a training model for inference.
"""

from __future__ import annotations

import os
from typing import Any

import keras

from keras_retinanet.model import backbones as backbones_lib
from keras_retinanet.model import fold
from keras_retinanet.model import layers as layers_lib
from keras_retinanet.model import losses as _losses  # noqa: F401  (registers what snapshots compile)
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.boxes import DEFAULT_MEAN, DEFAULT_STD
from keras_retinanet.model.files import ModelFileError, check_model_file
from keras_retinanet.model.precision import choose_precision, with_precision
from keras_retinanet.model.pyramid import (  # noqa: F401  (re-exported)
    classification_subnet,
    feature_pyramid,
    regression_subnet,
)
from keras_retinanet.model.resnet import DEPTHS, resnet_features
from keras_retinanet.model.saving import (  # noqa: F401  (re-exported)
    METADATA_KEY,
    _check_model_path,
    read_metadata,
    save_model,
    write_metadata,
)
from keras_retinanet.model.settings import (
    DetectionSettings,
    graph_settings,
    inference_settings,
)
from keras_retinanet.model.variants import ModelVariant, get_variant, variant_from_metadata

_SUPPORTED_LEVELS = (3, 4, 5, 6, 7)


def retinanet_model(
    num_classes: int,
    backbone: str = "resnet50",
    weights: str | None = "imagenet",
    freeze_backbone: bool = False,
    anchor_parameters: AnchorParameters | None = None,
    pyramid_feature_size: int | None = None,
    classification_feature_size: int | None = None,
    regression_feature_size: int | None = None,
    prior_probability: float = 0.01,
    freeze_batch_norm: bool | None = None,
    name: str = "retinanet",
    variant: str | ModelVariant | None = None,
) -> keras.Model:
    """The RetinaNet training model.

    Args:
        num_classes: K, number of object classes (no background class).
        backbone: a backbone preset (:data:`keras_retinanet.model.backbones.BACKBONES`:
            ``"resnet50"``, ``"mobilenet_v3_large_lite"``, ...).
        weights: backbone weights: ``"imagenet"`` (downloaded by ``keras.applications``), None,
            or the path of a local ``.h5`` weights file.
        freeze_backbone: make the backbone non-trainable.
        anchor_parameters: anchors; the pyramid levels used are ``log2(strides)`` (3..7 by
            default) and A = ``len(ratios) * len(scales)``.
        pyramid_feature_size: FPN channels; None: the variant's (256, lite 64).
        classification_feature_size: channels of the classification subnet's hidden convs;
            None: the variant's.
        regression_feature_size: channels of the regression subnet's hidden convs; None: the
            variant's.
        prior_probability: initial foreground probability of every anchor.
        freeze_batch_norm: keep the backbone's BatchNormalization frozen (see
            :func:`keras_retinanet.model.backbones.backbone_features`). None (default): frozen when
            loading pretrained weights, trained when starting from random weights, where frozen
            statistics (mean 0, variance 1) would leave the 50-layer ResNet unnormalised; a
            trained one's moving statistics use momentum 0.9 (PyTorch's default), not Keras'
            0.99, so they catch up with the weights within tens of steps.
        name: model name.
        variant: the architecture, a name in :data:`keras_retinanet.model.variants.VARIANTS`
            (None: the backbone preset's, this package's own or ``"lite"``). The fizyr and
            torchvision variants build their ResNet with :mod:`keras_retinanet.model.resnet`
            and take ``weights`` None only (their weights come from a converter,
            :mod:`keras_retinanet.convert`).

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
    variant = backbones_lib.preset_variant(backbone) if variant is None else get_variant(variant)
    pyramid_feature_size = pyramid_feature_size or variant.pyramid_channels
    classification_feature_size = classification_feature_size or variant.head_channels
    regression_feature_size = regression_feature_size or variant.head_channels
    if freeze_batch_norm is None:
        freeze_batch_norm = backbones_lib.resolve_weights(weights) is not None
    inputs = keras.Input(shape=(None, None, 3), name="image")
    if variant.backbone == "applications":
        c3, c4, c5 = backbones_lib.backbone_features(
            inputs,
            backbone=backbone,
            weights=weights,
            freeze_backbone=freeze_backbone,
            freeze_batch_norm=freeze_batch_norm,
        )
    else:
        c3, c4, c5 = _variant_backbone(
            inputs, backbone, weights, variant, freeze_backbone, freeze_batch_norm
        )
    pyramid = feature_pyramid(c3, c4, c5, feature_size=pyramid_feature_size, variant=variant)
    num_anchors = params.num_anchors
    regression_model = regression_subnet(
        4,
        num_anchors,
        pyramid_feature_size,
        regression_feature_size,
        variant=variant,
    )
    classification_model = classification_subnet(
        int(num_classes),
        num_anchors,
        pyramid_feature_size,
        classification_feature_size,
        prior_probability,
        variant=variant,
    )
    features = [pyramid[level] for level in levels]
    regression = keras.layers.Concatenate(axis=1, name="regression")(
        [regression_model(f) for f in features]
    )
    classification = keras.layers.Concatenate(axis=1, name="classification")(
        [classification_model(f) for f in features]
    )
    model = keras.Model(inputs=inputs, outputs=[regression, classification], name=name)
    # Not saved with the model (load_model sets it again from the metadata): what
    # as_inference_model decodes it with.
    model.variant = variant
    return model


def _variant_backbone(
    inputs: Any,
    backbone: str,
    weights: str | None,
    variant: ModelVariant,
    freeze_backbone: bool,
    freeze_batch_norm: bool,
) -> tuple[Any, Any, Any]:
    """C3..C5 of a variant's own ResNet, after the variant's input normalisation."""
    if backbones_lib.resolve_weights(weights) is not None:
        raise ValueError(
            f"model variant {variant.name!r} takes no backbone weights ({weights!r}); its "
            "weights come from a converted snapshot (retinanet-convert --from ...)"
        )
    name = backbones_lib.validate_backbone(backbone)
    if name not in DEPTHS:
        raise ValueError(
            f"model variant {variant.name!r} builds its own ResNet ({sorted(DEPTHS)}), not "
            f"{backbone!r}"
        )
    x = inputs
    if variant.input_normalisation != "caffe":
        x = layers_lib.NormalizeInput(variant.input_normalisation, name="normalize_input")(x)
    c3, c4, c5 = resnet_features(x, name, variant)
    backbones_lib.set_trainable(keras.Model(inputs, c5).layers, freeze_backbone, freeze_batch_norm)
    return c3, c4, c5


def is_inference_model(model: keras.Model) -> bool:
    """True for a model from :func:`retinanet_box` (outputs boxes, scores, labels)."""
    return any(isinstance(layer, layers_lib.FilterDetections) for layer in model.layers)


def retinanet_box(
    model: keras.Model,
    settings: DetectionSettings | None = None,
    anchor_parameters: AnchorParameters | None = None,
    regression_mean: Any = DEFAULT_MEAN,
    regression_std: Any = DEFAULT_STD,
    name: str = "retinanet_box",
    jit_compile: bool | str = "auto",
    variant: str | ModelVariant | None = None,
    fold_batch_norm: bool = True,
    **setting_overrides: Any,
) -> keras.Model:
    """Wrap a training model with anchors, box decoding, clipping and detection filtering.

    Args:
        model: a model from :func:`retinanet_model` (or loaded from its snapshot).
        settings: what the graph keeps (score threshold, NMS, budgets; see
            :class:`~keras_retinanet.model.settings.DetectionSettings`); None: the defaults.
            A ``pre_nms_top_k_per_level`` of ``"auto"`` becomes the variant's: 1000 per level
            (Lin et al. 2017, sec. 4.1), none for fizyr's. The model keeps the settings it was
            built with as ``detection_settings``.
        anchor_parameters: the anchors the model was trained with.
        regression_mean, regression_std: the regression target normalisation used in training.
        name: model name.
        jit_compile: XLA for ``predict`` / ``predict_on_batch``: ``"auto"`` leaves Keras'
            choice (on TensorFlow: XLA on GPU, off on CPU-only machines, where it measured
            slower, see ``benchmarks/README.md``), True or False forces it. XLA compiles
            once per input shape, so pad inputs to a few sizes
            (:func:`keras_retinanet.inference.prepare_batch` does). Not saved with the model.
        variant: the model variant ``model`` was built as (its anchor rule, box coder and
            clipping); None: this package's own. Snapshots record it (``"variant"``), and
            :func:`load_model` passes it.
        fold_batch_norm: fold every batch normalisation into the convolution before it
            (:mod:`keras_retinanet.model.fold`): the same detections, faster. The inference model
            then holds a copy of the weights; False shares ``model``'s layers, so that it
            follows ``model`` while it trains (the evaluation callback's case).
        **setting_overrides: fields of ``settings`` to change (``score_threshold=0.3``...).

    Returns:
        A ``keras.Model`` from ``(B, H, W, 3)`` preprocessed images to ``boxes`` ``(B, D, 4)``
        (input-image pixels), ``scores`` ``(B, D)`` and ``labels`` ``(B, D)``, sorted by score
        and padded with -1.

    Raises:
        ValueError: ``model`` is already an inference model, or its heads do not match the
            anchor parameters.
        TypeError: an override that is not a detection setting.
    """
    if is_inference_model(model):
        raise ValueError("retinanet_box() got an inference model; pass the training model")
    params = anchor_parameters or AnchorParameters()
    variant = get_variant(variant)
    settings = (settings or DetectionSettings()).replace(**setting_overrides)
    if settings.pre_nms_top_k_per_level == "auto":
        settings = settings.replace(pre_nms_top_k_per_level=variant.pre_nms_top_k_per_level)
    if fold_batch_norm:
        model = fold.fold_batch_norm(model)
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
            rule=variant.anchor_rule,
            name=f"anchors_{i}",
        )([feature, model.inputs[0]] if variant.anchor_rule == "torchvision" else feature)
        for i, (size, stride, feature) in enumerate(zip(params.sizes, params.strides, features))
    ]
    anchors = keras.layers.Concatenate(axis=1, name="anchors")(level_anchors)
    regression, classification = model.outputs[0], model.outputs[1]
    boxes = layers_lib.RegressBoxes(
        mean=regression_mean, std=regression_std, coder=variant.box_coder, name="boxes"
    )([anchors, regression])
    boxes = layers_lib.ClipBoxes(clip=variant.clip, name="clipped_boxes")([model.inputs[0], boxes])
    # The per-level anchors tell FilterDetections where each level's rows start; only the
    # per-level selection needs them, so the default graph keeps the two-input call.
    level_inputs = level_anchors if settings.pre_nms_top_k_per_level is not None else []
    detections = layers_lib.FilterDetections(**settings.graph_kwargs(), name="filtered_detections")(
        [boxes, classification, *level_inputs]
    )
    prediction_model = keras.Model(inputs=model.inputs, outputs=list(detections), name=name)
    # Not saved with the model (load_model sets it again from the metadata): the variant's
    # resize rule and padding, which inference.detect applies before the graph.
    prediction_model.variant = variant
    prediction_model.detection_settings = settings
    if jit_compile != "auto":
        prediction_model.jit_compile = bool(jit_compile)
    return prediction_model


def as_inference_model(
    model: Any,
    settings: DetectionSettings | None = None,
    anchor_parameters: AnchorParameters | None = None,
    variant: str | ModelVariant | None = None,
) -> Any:
    """The inference model of ``model``: a training model goes through :func:`retinanet_box`
    with its variant (``model.variant`` when set, else ``variant``); an inference model, or any
    object with a ``predict_on_batch`` that returns boxes, scores and labels, comes back as
    it is (:func:`keras_retinanet.inference.detect` checks the threshold asked of it).

    Args:
        model: a training or inference model.
        settings: what a converted graph keeps; None: the defaults.
        anchor_parameters: the anchors of a training model (None: the defaults).
        variant: the variant of a training model that does not carry one.
    """
    if isinstance(model, keras.Model) and not is_inference_model(model):
        return retinanet_box(
            model,
            settings=settings,
            anchor_parameters=anchor_parameters,
            variant=getattr(model, "variant", None) or variant,
        )
    return model


def load_model(
    path: str,
    convert: bool = False,
    anchor_parameters: AnchorParameters | None = None,
    compile: bool = False,
    settings: DetectionSettings | None = None,
    precision: str = "float32",
    **setting_overrides: Any,
) -> keras.Model:
    """Load a training or inference model saved as ``.keras`` or ``.h5``.

    The detection settings come from the file (``"detection_settings"`` in its metadata, or the
    graph of an inference model), then ``settings``, then ``setting_overrides``. The returned
    inference model carries them as ``detection_settings``.

    Args:
        path: the model file.
        convert: turn a training model into the inference model (:func:`retinanet_box`); an
            inference model is returned as it is.
        anchor_parameters: anchors for ``convert``; by default those recorded in the file's
            metadata, else the defaults.
        compile: restore the training configuration (optimizer, losses) too.
        settings: detection settings to use instead of the file's.
        precision: ``"bfloat16"`` runs the network of the inference model in bfloat16
            (:func:`keras_retinanet.model.precision.with_precision`; on a CPU without bfloat16
            instructions it warns and stays float32). Only with ``convert`` or an inference
            file.
        **setting_overrides: fields of the settings to change (``score_threshold=0.3``...).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: ``path`` is damaged, not a model, or another package's model.
        ThresholdError: an inference file asked for a lower score threshold than its graph
            applies (its message says how to get one).
        ValueError: an inference file asked for other NMS or budget settings than its graph's.
    """
    path = os.fspath(path)
    check_model_file(path)  # damaged, not a model, another package's: said before Keras tries
    metadata = read_metadata(path)
    try:
        model = keras.saving.load_model(path, compile=compile)
    except Exception as error:  # Keras raises many types for a file it cannot read
        raise ModelFileError(
            f"{path} could not be loaded as a model ({type(error).__name__}: {error}); is it "
            "complete, and written by this package's version or an older one?"
        ) from error
    recorded = metadata.get("detection_settings")
    if convert and not is_inference_model(model):
        if anchor_parameters is None:
            anchors = metadata.get("anchor_parameters")
            anchor_parameters = AnchorParameters.from_dict(anchors) if anchors else None
        wanted = (settings or DetectionSettings.from_dict(recorded)).replace(**setting_overrides)
        inference = retinanet_box(
            model,
            settings=wanted,
            anchor_parameters=anchor_parameters,
            variant=variant_from_metadata(metadata),
        )
        return with_precision(inference, choose_precision(precision))
    if is_inference_model(model):
        if convert:  # an inference file saved before folding existed, or with it turned off
            model = fold.fold_batch_norm(model)
        model.variant = variant_from_metadata(metadata)
        baked = graph_settings(model)
        base = DetectionSettings.from_dict(recorded) if recorded else baked
        wanted = (settings or base).replace(**setting_overrides)
        model.detection_settings = inference_settings(model, wanted, baked, path)
        model = with_precision(model, choose_precision(precision))
    else:
        model.variant = variant_from_metadata(metadata)  # what as_inference_model decodes with
    return model
