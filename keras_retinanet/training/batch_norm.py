"""Population statistics for the BatchNormalization layers that train ("precise BN").

A BatchNormalization that trains (a random start) normalises each training batch by that
batch's own mean and variance, and inference by moving averages of them. The averages lag
behind the weights, and with 1-2 small images per batch each term is noisy, so after a short
run the model in inference sees other activations than it trained on. Before each epoch's
evaluation and snapshot, :class:`PreciseBatchNorm` replaces the averages with the plain mean
over training batches at the epoch's final weights, as detectron2's ``PreciseBN`` hook does
(Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021, sec. 3).

Frozen BatchNormalization (a pretrained start) is left alone: there is nothing to estimate.

The estimating passes run with dropout off (EfficientNet's stochastic depth drops whole
residual branches per image): the statistics are those of the network inference runs. With
dropout on, a batch of one or two images either loses a branch or scales it by ``1 / (1 -
rate)``, and the estimate is that of another network: on a random ``efficientnet_b1_lite``
estimated from one image, P3's features came out ~2000x larger than with dropout off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import keras
import numpy as np


def trained_batch_norms(model: keras.Model) -> list:
    """The model's trainable BatchNormalization layers, nested models included."""
    return [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def training_forward(model: keras.Model) -> Callable[[Any], Any]:
    """``images -> model(images, training=True)``, compiled on TensorFlow (``tf.function``
    with relaxed shapes: 3x faster than eager there, 0.42 vs 1.29 s per batch of 4 at
    160 px); eager on the other backends, whose eager calls cost little."""
    if keras.backend.backend() == "tensorflow":
        # TensorFlow only here: the package imports and runs on JAX without it
        import tensorflow as tf

        return tf.function(lambda images: model(images, training=True), reduce_retracing=True)
    return lambda images: model(images, training=True)


def update_batch_norm_statistics(
    model: keras.Model,
    batches: Iterable[Any],
    forward: Callable[[Any], Any] | None = None,
) -> int:
    """Set the moving mean and variance of every trained BatchNormalization of ``model`` to
    the mean over ``batches`` (image arrays) of each batch's statistics at the current
    weights; the weights are not changed. Returns the number of batches used (0: the model
    has no trained BatchNormalization, nothing was run). If reading a batch fails, the
    statistics are put back as they were.

    Args:
        model: the training model.
        batches: image arrays ``(B, H, W, 3)`` float32, as the model takes them.
        forward: ``training_forward(model)``, to reuse its compiled function across calls;
            built here when None.
    """
    layers = trained_batch_norms(model)
    if not layers:
        return 0
    forward = forward or training_forward(model)
    momenta = [layer.momentum for layer in layers]
    # Dropout off while estimating (read when the forward pass is traced or run eagerly).
    dropouts = [layer for layer in model._flatten_layers()
                if isinstance(layer, keras.layers.Dropout)]  # fmt: skip
    rates = [layer.rate for layer in dropouts]
    before = [_statistics(layer) for layer in layers]
    sums = [(np.zeros_like(mean, np.float64), np.zeros_like(variance, np.float64))
            for mean, variance in before]  # fmt: skip
    count = 0
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for layer in layers:
            layer.momentum = 0.0  # moving <- this batch's statistics, read after each pass
        for images in batches:
            forward(images)
            count += 1
            for (mean_sum, variance_sum), layer in zip(sums, layers, strict=True):
                mean, variance = _statistics(layer)
                mean_sum += mean
                variance_sum += variance
    except BaseException:
        for layer, statistics in zip(layers, before, strict=True):
            _assign(layer, *statistics)
        raise
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for layer, rate in zip(dropouts, rates, strict=True):
            layer.rate = rate
    for layer, (mean_sum, variance_sum), statistics in zip(layers, sums, before, strict=True):
        _assign(layer, *((mean_sum / count, variance_sum / count) if count else statistics))
    return count


def _statistics(layer: Any) -> tuple[np.ndarray, np.ndarray]:
    return (
        keras.ops.convert_to_numpy(layer.moving_mean),
        keras.ops.convert_to_numpy(layer.moving_variance),
    )


def _assign(layer: Any, mean: np.ndarray, variance: np.ndarray) -> None:
    layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
    layer.moving_variance.assign(variance.astype(layer.moving_variance.dtype))


class PreciseBatchNorm(keras.callbacks.Callback):
    """At the end of epoch ``e``, :func:`update_batch_norm_statistics` over the images of the
    first ``batches`` training batches of data pass ``e`` (augmented as in training), so that
    the evaluation and the snapshot after it use them.

    At most as many batches as the epoch has steps. Each costs a forward pass (compiled on
    TensorFlow, where the same function serves every epoch) and loading its images. Put it
    before the evaluation and snapshot callbacks. A model without trained BatchNormalization
    costs nothing.
    """

    def __init__(
        self, generator: Any, batches: int = 20, verbose: int = 0, steps: int | None = None
    ) -> None:
        super().__init__()
        self.steps = steps  # of a whole epoch (fit's own count is short in a resumed one)
        self.generator = generator
        self.batches = int(batches)
        self.verbose = verbose
        self.last_count = 0
        self._forward: Callable[[Any], Any] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.batches <= 0 or not trained_batch_norms(self.model):
            return
        steps = self.steps or (self.params or {}).get("steps") or self.batches
        groups = self.generator.epoch_groups(epoch)[: min(self.batches, steps)]
        if self._forward is None:
            self._forward = training_forward(self.model)
        self.last_count = update_batch_norm_statistics(
            self.model, self._inputs(groups, epoch), self._forward
        )
        if self.verbose:
            print(
                f"BatchNormalization statistics re-estimated over {self.last_count} batches",
                flush=True,
            )

    def _inputs(self, groups: list, epoch: int) -> Iterator[Any]:
        """The model inputs of ``groups`` as augmented in data pass ``epoch``: the images of
        ``epoch_batch`` without its anchor targets; unreadable images are left out."""
        for group in groups:
            images, _, _ = self.generator.preprocess_group(group, epoch)
            if images:
                yield self.generator.compute_inputs(images)
