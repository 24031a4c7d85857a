"""Multi-device and multi-machine scopes: which strategy a training runs under, and how many
devices share each batch."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import keras

from keras_retinanet.training import multi_worker
from keras_retinanet.training.config import TrainingError


def distribution_scope(
    strategy: str | None,
    num_devices: int | None = None,
    cluster: list[str] | None = None,
    task_index: int | None = None,
) -> Any:
    """A context in which to build, compile and fit the model for multi-device training.

    * ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over the first ``num_devices`` GPUs
      (or logical CPUs when there is no GPU), TensorFlow backend only.
    * ``"multi_worker"``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the machines in
      ``cluster`` (``host:port`` of each, the chief first) with this one at ``task_index``, or
      else over the cluster in ``TF_CONFIG``; :func:`train` then runs its own loop
      (:mod:`keras_retinanet.multi_worker`), as Keras 3's ``fit`` fails under this strategy.
    * ``"data_parallel"``: ``keras.distribution.DataParallel`` (JAX backend).

    Raises:
        TrainingError: the strategy does not fit the backend or the devices.
    """
    if strategy is None:
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if strategy in ("mirrored", "multi_worker"):
        if backend != "tensorflow":
            raise TrainingError(
                f"--distribute {strategy} needs the TensorFlow backend (KERAS_BACKEND is "
                f"{backend!r}); on JAX use --distribute data_parallel"
            )
        # TensorFlow only here: the package imports and runs on JAX without it
        import tensorflow as tf

        if strategy == "multi_worker":
            try:
                return multi_worker.create_strategy(cluster, task_index).scope()
            except ValueError as e:
                raise TrainingError(str(e)) from e
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        names = [d.name for d in devices]
        if num_devices:
            if num_devices > len(names):
                raise TrainingError(
                    f"asked for {num_devices} devices but only {len(names)} are visible: {names}"
                )
            names = names[:num_devices]
        return tf.distribute.MirroredStrategy(devices=names).scope()
    if strategy == "data_parallel":
        if backend != "jax":
            raise TrainingError(
                f"--distribute data_parallel needs the JAX backend (KERAS_BACKEND is "
                f"{backend!r}); on TensorFlow use --distribute mirrored"
            )
        devices = keras.distribution.list_devices()
        if num_devices:
            if num_devices > len(devices):
                raise TrainingError(
                    f"asked for {num_devices} devices but only {len(devices)} are visible"
                )
            devices = devices[:num_devices]
        return keras.distribution.DataParallel(devices=devices).scope()
    raise TrainingError(
        f"unknown distribution strategy {strategy!r}; use mirrored, multi_worker or data_parallel"
    )


def replicas_in_sync() -> int:
    """How many devices share each batch under the current distribution (1 when none)."""
    if keras.backend.backend() == "tensorflow":
        # TensorFlow only here: the package imports and runs on JAX without it
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return int(tf.distribute.get_strategy().num_replicas_in_sync)
    distribution = keras.distribution.distribution()
    if distribution is not None:
        mesh = getattr(distribution, "device_mesh", None)
        if mesh is not None:
            return math.prod(mesh.shape)
    return 1
