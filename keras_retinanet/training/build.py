"""The model a training run starts from: a new compiled RetinaNet, or a resumed snapshot."""

from __future__ import annotations

import warnings
from typing import Any

import keras

from keras_retinanet.model import losses
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.training.config import DEFAULT_LR, TrainConfig, TrainingError


def compile_model(
    model: keras.Model,
    lr: float | None = DEFAULT_LR,
    clipnorm: float | None = 0.001,
    variant: Any = None,
) -> keras.Model:
    """Compile with Adam and the model variant's losses
    (:func:`keras_retinanet.model.losses.losses_for`: focal loss on ``classification``, the
    variant's box loss on ``regression``); ``variant`` None: ours."""
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=DEFAULT_LR if lr is None else lr, clipnorm=clipnorm
        ),
        loss=losses.losses_for(variant),
    )
    return model


def build_compiled_state(model: keras.Model) -> None:
    """Create the compiled loss' state before ``fit``, so the train step is traced once.

    Keras' TensorFlow trainer builds the loss trackers ahead of ``fit`` only under a
    distribution strategy; otherwise they are created inside the first trace of the train
    step, and ``tf.function`` then traces the whole step a second time (about 20 s for a
    ResNet50 RetinaNet on a CPU, every time training starts). Batches are
    ``(images, (regression, classification))`` with anchors on axis 1 and one more column
    than the model's output (the anchor state); symbolic tensors of those shapes build it.
    """
    build = getattr(model, "_symbolic_build", None)
    if keras.backend.backend() != "tensorflow" or build is None:
        return
    targets = tuple(keras.KerasTensor((None, None, t.shape[-1] + 1)) for t in model.outputs)
    images = keras.KerasTensor((None, *model.inputs[0].shape[1:]))
    build(data_batch=(images, targets))


def build_or_resume(
    config: TrainConfig, num_classes: int, params: AnchorParameters
) -> tuple[keras.Model, int]:
    """A compiled training model and the number of epochs already done.

    Raises:
        TrainingError: the resume snapshot does not fit the dataset.
    """
    if config.snapshot:
        metadata = models.read_metadata(config.snapshot)
        recorded = metadata.get("num_classes")
        if recorded is not None and recorded != num_classes:
            raise TrainingError(
                f"snapshot {config.snapshot} was trained for {recorded} classes but the dataset "
                f"has {num_classes}; resume on the same dataset or start a new training"
            )
        model = keras.saving.load_model(config.snapshot, compile=True)
        if models.is_inference_model(model):
            raise TrainingError(
                f"{config.snapshot} is an inference model; resume from a training snapshot"
            )
        if getattr(model, "optimizer", None) is None:  # absent on an uncompiled load
            warnings.warn(
                f"{config.snapshot} holds the weights only (only the newest epoch snapshot "
                "keeps the optimizer state): training goes on with a fresh Adam",
                stacklevel=2,
            )
            compile_model(model, config.lr, config.clipnorm, config.variant)
        elif config.lr is not None:
            stored = float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))
            model.optimizer.learning_rate = config.lr  # a variable or a schedule alike
            # Said even under --quiet: the run differs from the one the snapshot was part of.
            print(
                f"--lr {config.lr:g} replaces the learning rate {stored:g} of "
                f"{config.snapshot}'s optimizer"
            )
        return model, int(metadata.get("epoch", 0))
    model = models.retinanet_model(
        num_classes,
        backbone=config.backbone,
        weights=config.weights,
        freeze_backbone=config.freeze_backbone,
        anchor_parameters=params,
        variant=config.variant,
    )
    return compile_model(model, config.lr, config.clipnorm, config.variant), 0
