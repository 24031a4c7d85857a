"""Population statistics for the BatchNormalization layers that train ("precise BN").

A BatchNormalization that trains (a random start) normalises each training batch by that
batch's own mean and variance, and inference by moving averages of them. The averages lag
behind the weights, and with 1-2 small images per batch each term is noisy, so after a short
run the model in inference sees other activations than it trained on. Before each epoch's
evaluation and snapshot, :class:`PreciseBatchNorm` replaces the averages with the plain mean
over training batches at the epoch's final weights, as detectron2's ``PreciseBN`` hook does
(Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021, sec. 3).

Frozen BatchNormalization (a pretrained start) is left alone: there is nothing to estimate.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import keras


def trained_batch_norms(model: keras.Model) -> list:
    """The model's trainable BatchNormalization layers, nested models included."""
    return [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable
    ]


def update_batch_norm_statistics(model: keras.Model, batches: Iterable[Any]) -> int:
    """Set the moving mean and variance of every trained BatchNormalization of ``model`` to
    the mean over ``batches`` (image arrays) of each batch's statistics at the current
    weights; the weights are not changed. Returns the number of batches used (0: the model
    has no trained BatchNormalization, nothing was run)."""
    layers = trained_batch_norms(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for count, images in enumerate(batches, 1):
            # moving <- moving * m + batch * (1 - m) with m = 1 - 1/count: the running mean
            # of the batches so far (the first one replaces the old value).
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / count
            model(images, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return count


class PreciseBatchNorm(keras.callbacks.Callback):
    """At the end of epoch ``e``, :func:`update_batch_norm_statistics` over the images of the
    first ``batches`` training batches of data pass ``e`` (augmented as in training), so that
    the evaluation and the snapshot after it use them.

    At most as many batches as the epoch has steps. Each costs an eager forward pass and
    loading its images, about half a training step (2 CPU cores, 256-352 px: 20 batches took
    ~25 s, a step 2.7 s), so this adds under half to the shortest epochs and ~1% to an epoch
    of 1000 steps. Put it before the evaluation and snapshot callbacks. A model without
    trained BatchNormalization costs nothing.
    """

    def __init__(self, generator: Any, batches: int = 20, verbose: int = 0) -> None:
        super().__init__()
        self.generator = generator
        self.batches = int(batches)
        self.verbose = verbose
        self.last_count = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.batches <= 0 or not trained_batch_norms(self.model):
            return
        steps = (self.params or {}).get("steps") or self.batches
        groups = self.generator.epoch_groups(epoch)[: min(self.batches, steps)]
        self.last_count = update_batch_norm_statistics(self.model, self._inputs(groups, epoch))
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
