"""How a :class:`~keras_retinanet.preprocessing.generator.Generator` splits its images into
batches for one pass over the data, and whether its augmentation takes a seed."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np


def group_images(generator: Any, epoch: int) -> list[np.ndarray]:
    """The groups of image indices (one per batch) of data pass ``epoch``: a function of the
    generator's seed, settings and ``epoch`` alone (no state), so any pass can be rebuilt."""
    rng = np.random.default_rng([generator._base_seed, epoch])
    batch_size = generator.batch_size
    order = np.arange(generator.size())
    if generator.shard is not None:
        order = order[generator.shard[0] :: generator.shard[1]]
    method = generator.group_method
    if method == "random" or (method == "ratio" and generator.shuffle):
        order = rng.permutation(order)
    if method == "ratio":
        ratios = np.array([generator.image_aspect_ratio(int(i)) for i in order])
        order = order[np.argsort(ratios, kind="stable")]
    groups = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if generator.full_batches and groups and len(groups[-1]) < batch_size:
        # np.resize repeats the order when the dataset is smaller than one batch.
        missing = np.resize(order, batch_size - len(groups[-1]))
        groups[-1] = np.concatenate([groups[-1], missing])
    if generator.shuffle:
        groups = [groups[i] for i in rng.permutation(len(groups))]
    return groups


def accepts_seed(transform: Any) -> bool:
    """Whether the augmentation callable takes ``seed=`` (then each image gets its own)."""
    return accepts_keyword(transform, "seed")


def accepts_keyword(transform: Any, name: str) -> bool:
    """Whether the augmentation callable takes the keyword argument ``name``."""
    if transform is None:
        return False
    try:
        parameters = inspect.signature(transform).parameters
    except (TypeError, ValueError):
        return False
    return name in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )
