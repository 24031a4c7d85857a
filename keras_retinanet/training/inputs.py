"""The training input: the generators of a :class:`TrainConfig`, and how their batches reach
``model.fit`` (through ``tf.data`` on TensorFlow)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.preprocessing.anchor_fit import (
    AUTO_FIT_SHARE,
    collect_boxes,
    coverage_of,
    describe,
    fit_anchors,
)
from keras_retinanet.preprocessing.factory import create_generator
from keras_retinanet.preprocessing.transform import random_transform
from keras_retinanet.training.config import TrainConfig


def fit_input(generator: Any, first_step: int = 0) -> tuple[Any, list[keras.callbacks.Callback]]:
    """What to pass to ``model.fit`` for a generator, and the callbacks that go with it.

    On JAX and PyTorch, a :class:`StepStream` over the generator. On TensorFlow, Keras'
    ``PyDataset`` adapter fixes the input signature from the first two
    batches, so a later batch of another image size fails ("yielded an element of shape ...
    where ... was expected"); detection batches vary in size, so there the batches are fed
    through ``tf.data`` with a fully dynamic signature instead, loaded by
    ``generator.workers`` parallel calls. Step ``k`` of training is batch ``k % n`` of data
    pass ``k // n`` (``n`` batches a pass, :meth:`Generator.epoch_batch`), counted from
    ``first_step`` (where a resumed training stopped): batches loaded ahead of a pass's end
    come from the next pass, and a resumed run goes on with the data order it would have had.
    """
    if keras.backend.backend() != "tensorflow":
        return StepStream(generator, first_step), []
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    num_classes = generator.num_classes()
    batches = len(generator)

    def load(step: Any) -> tuple[Any, Any, Any]:
        epoch, index = divmod(int(step), batches)
        images, (regression, classification) = generator.epoch_batch(epoch, index)
        return (
            np.asarray(images, dtype=np.float32),
            np.asarray(regression, dtype=np.float32),
            np.asarray(classification, dtype=np.float32),
        )

    def load_tf(step: Any) -> tuple[Any, tuple[Any, Any]]:
        images, regression, classification = tf.numpy_function(
            load, [step], [tf.float32, tf.float32, tf.float32]
        )
        images.set_shape((None, None, None, 3))
        regression.set_shape((None, None, 5))
        classification.set_shape((None, None, num_classes + 1))
        return images, (regression, classification)

    workers = int(getattr(generator, "workers", 1) or 0)
    dataset = tf.data.Dataset.counter(start=int(first_step))
    if workers == 0:  # one batch at a time, when asked for: nothing loads ahead
        return dataset.map(load_tf), []
    dataset = dataset.map(load_tf, num_parallel_calls=workers, deterministic=True)
    return dataset.prefetch(max(2, workers)), []


class StepStream(keras.utils.PyDataset):
    """The training batches of a generator as one endless stream, step by step: item ``i`` is
    batch ``k % n`` of data pass ``k // n`` with ``k = first_step + i`` (``n`` batches a pass),
    the same order the ``tf.data`` input of :func:`fit_input` gives on TensorFlow.

    Handing ``fit`` the generator itself would tie the batches to ``fit``'s epochs: an epoch of
    ``--steps`` shorter than a data pass, or one resumed in its middle, would restart or
    reshuffle the pass at the wrong step. Loaded by the generator's own workers.
    """

    def __init__(self, generator: Any, first_step: int = 0) -> None:
        super().__init__(
            workers=int(getattr(generator, "workers", 1) or 1),
            use_multiprocessing=bool(getattr(generator, "use_multiprocessing", False)),
        )
        self.generator = generator
        self.first_step = int(first_step)
        self.batches = len(generator)

    @property
    def num_batches(self) -> None:
        return None  # endless: fit's steps_per_epoch ends each epoch

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        epoch, batch = divmod(self.first_step + int(index), self.batches)
        return self.generator.epoch_batch(epoch, batch)


def _generator_kwargs(config: TrainConfig, params: AnchorParameters) -> dict:
    return {
        "batch_size": config.batch_size,
        "image_min_side": config.image_min_side,
        "image_max_side": config.image_max_side,
        "anchor_parameters": params,
        "variant": config.variant,
        "seed": config.seed,
        "skip_bad_images": config.skip_bad_images,
        "workers": config.workers,
        "use_multiprocessing": config.multiprocessing,
    }


def create_generators(
    config: TrainConfig,
    params: AnchorParameters,
    full_batches: bool = False,
    shard: tuple[int, int] | None = None,
    batch_size: int | None = None,
) -> tuple[Any, Any]:
    """The training generator (shuffled, augmented if asked) and the validation one or None.

    ``full_batches`` makes every training batch hold ``batch_size`` images, as multi-device
    training needs; ``shard`` and ``batch_size`` (instead of ``config.batch_size``) give a
    worker of a multi-machine training its part of the data and its per-replica batch (see
    :class:`~keras_retinanet.preprocessing.generator.Generator`).
    """

    transform = None
    if config.random_transform:
        transform = random_transform(seed=config.seed)
    kwargs = _generator_kwargs(config, params)
    train_kwargs = dict(kwargs, batch_size=batch_size or config.batch_size)
    train_generator = create_generator(
        config.dataset,
        "train",
        shuffle=True,
        transform=transform,
        full_batches=full_batches,
        shard=shard,
        **train_kwargs,
    )
    validation_generator = None
    if config.evaluation:
        val_kwargs = dict(kwargs, batch_size=1, workers=1, use_multiprocessing=False)
        validation_generator = create_generator(
            config.dataset, "val", shuffle=False, group_method="none", **val_kwargs
        )
    return train_generator, validation_generator


# Images --anchors auto reads (evenly spaced): a few thousand boxes pin the box sizes down, and
# reading COCO's 118k headers would take minutes.
AUTO_FIT_IMAGES = 5000


def auto_anchors(config: TrainConfig) -> tuple[AnchorParameters | None, str]:
    """``--anchors auto``: anchors fitted to the training boxes when the default anchors leave
    more than :data:`~keras_retinanet.preprocessing.anchor_fit.AUTO_FIT_SHARE` of some class's
    boxes without a positive anchor at the training image size.

    The boxes come from the whole training set (up to :data:`AUTO_FIT_IMAGES` images, no
    augmentation, image sizes read from the file headers), so every worker of a cluster fits
    the same anchors.

    Returns:
        ``(anchors, message)``: the fitted anchors, or None where the defaults are kept, and
        one line saying what was done and why.
    """
    kwargs = dict(_generator_kwargs(config, AnchorParameters()), workers=1)
    generator = create_generator(config.dataset, "train", shuffle=False, **kwargs)
    sample = collect_boxes(generator, limit=AUTO_FIT_IMAGES, progress=False)
    rule = generator.variant.anchor_rule
    defaults = coverage_of(sample, AnchorParameters(), rule)
    # Classes without boxes count as covered: nothing to fit them to.
    uncovered = 1 - np.nan_to_num(defaults.class_shares, nan=1.0)
    worst = int(np.argmax(uncovered)) if len(uncovered) else 0
    size = f"{config.image_min_side}-{config.image_max_side} px"
    if not len(sample) or uncovered[worst] <= AUTO_FIT_SHARE:
        worst_text = "every box has one"
        if len(sample) and uncovered[worst] > 0:
            worst_text = (
                f"most uncovered: {sample.class_names[worst]} {100 * uncovered[worst]:.0f}%, at "
                f"most {100 * AUTO_FIT_SHARE:.0f}% allowed"
            )
        return None, (
            f"anchors: the defaults cover the training boxes at {size} ({worst_text}); kept"
        )
    _, fitted = fit_anchors(sample, AnchorParameters(), rule)
    after = 1 - np.nan_to_num(fitted.class_shares, nan=1.0)
    return fitted.params, (
        f"anchors: fitted to the training boxes because {100 * uncovered[worst]:.0f}% of "
        f"{sample.class_names[worst]} had no anchor with IoU >= 0.5 at {size} (now "
        f"{100 * after[worst]:.0f}%; all classes {100 * (1 - defaults.share):.1f}% -> "
        f"{100 * (1 - fitted.share):.1f}%): {describe(fitted.params)}; "
        "stored in the snapshot (--anchors default keeps the defaults)"
    )
