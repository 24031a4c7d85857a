"""Training across machines: ``tf.distribute.MultiWorkerMirroredStrategy`` with a custom loop.

Keras 3's ``fit`` does not run under this strategy (keras-team/keras#20585): it all-reduces
the first batch to build the model (the collective strategy rejects a nested batch) and
reduces each logged scalar along an axis 0 it does not have. So under this strategy
:func:`keras_retinanet.training.train` uses :func:`fit` here instead: one ``tf.function`` runs
the step on every replica with ``strategy.run``, the optimizer all-reduces the gradients, and
the logged losses are averaged over all replicas. Callbacks, the progress bar and the history
work as with ``model.fit``.

How the workers share the work (all set up by ``train``):

* Worker ``i`` of ``n`` reads the images whose index is ``i`` modulo ``n``
  (``Generator(shard=(i, n))``), in batches of ``batch_size / replicas`` images per replica.
* Only the chief (worker 0) evaluates, writes snapshots, logs and TensorBoard summaries; the
  others wait for it in the next step's all-reduce. It calls the model directly
  (:class:`DirectPredictor`), not through the strategy, which would gather every worker's.
* The moving statistics of trained BatchNormalization layers, which each replica updates from
  its own images, are averaged over all replicas at the end of every epoch
  (:func:`state_averager`).
* A stop asked for on any worker (time limit, callback, SIGTERM) is agreed on after each batch
  and epoch (:func:`any_worker`); a NaN loss, being global, stops all at once.
* A worker that dies fails the others' next all-reduce: they stop with :class:`WorkerLost`.

TensorFlow is imported inside the functions that use it: ``training`` imports on JAX too.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import keras
import numpy as np

from keras_retinanet.model.image_sizes import sized_detector


def cluster_from_flags(hosts: list[str], task_index: int) -> Any:
    """A cluster resolver for ``--cluster HOST:PORT,... --task-index I`` (instead of TF_CONFIG).

    Args:
        hosts: every worker's ``host:port``, the chief first, in the same order on every
            machine.
        task_index: this machine's position in ``hosts``.

    Raises:
        ValueError: an entry is not ``host:port``, a host is given twice, or the index is out
            of range.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"--cluster entry {host!r} is not HOST:PORT (e.g. 10.0.0.2:12345)")
    if len(set(hosts)) != len(hosts):
        raise ValueError(f"--cluster names a worker twice: {hosts}")
    if not 0 <= task_index < len(hosts):
        raise ValueError(
            f"--task-index {task_index} is out of range for {len(hosts)} workers in --cluster; "
            f"use 0 (the chief) to {len(hosts) - 1}"
        )
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": list(hosts)}),
        task_type="worker",
        task_id=int(task_index),
        rpc_layer="grpc",
    )


def local_cluster(count: int) -> list[str]:
    """``localhost:PORT`` for ``count`` workers on this machine, on ports free right now: a
    ``--cluster`` for trying multi-worker training (or testing it) on one machine."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        return [f"localhost:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()


def create_strategy(hosts: list[str] | None = None, task_index: int | None = None) -> Any:
    """A ``MultiWorkerMirroredStrategy`` for the cluster in ``hosts`` or else in TF_CONFIG.

    It must be created before TensorFlow runs its first operation in the process; every
    worker blocks here until all of them have started.

    Raises:
        ValueError: no cluster is given (neither flags nor TF_CONFIG), or the flags are bad.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    if hosts:
        if task_index is None:
            raise ValueError("--cluster needs --task-index: this machine's position in the list")
        resolver = cluster_from_flags(hosts, task_index)
    elif os.environ.get("TF_CONFIG"):
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise ValueError(
                f"TF_CONFIG is not valid JSON ({e}): {os.environ['TF_CONFIG']!r}"
            ) from e
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    else:
        raise ValueError(
            "--distribute multi_worker needs the cluster: pass --cluster HOST:PORT,HOST:PORT "
            "--task-index I (the same list on every machine, I its position) or set TF_CONFIG"
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    except RuntimeError as e:  # "Collective ops must be configured at program startup"
        raise ValueError(
            f"could not start MultiWorkerMirroredStrategy ({e}); start a fresh process for "
            "multi-worker training (TensorFlow must not have run anything before)"
        ) from e


def active_strategy() -> Any:
    """The ``MultiWorkerMirroredStrategy`` in scope, or None (no TF, or another strategy)."""
    if keras.backend.backend() != "tensorflow":
        return None
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return None
    strategy = tf.distribute.get_strategy()
    return strategy if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else None


def worker_position(strategy: Any) -> tuple[int, int]:
    """``(index, count)`` of this worker among all workers; index 0 is the chief.

    Numbered as TensorFlow numbers input pipelines: a ``chief`` task first, then the
    ``worker`` tasks in order.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    chiefs, workers = len(spec.get("chief", [])), len(spec.get("worker", []))
    if not chiefs + workers:
        return 0, 1
    if resolver.task_type == "chief":
        return 0, chiefs + workers
    return chiefs + int(resolver.task_id), chiefs + workers


def is_chief(strategy: Any = None) -> bool:
    """Whether this process writes snapshots and logs: always, except on workers 1..n-1."""
    strategy = strategy if strategy is not None else active_strategy()
    return strategy is None or worker_position(strategy)[0] == 0


class WorkerLost(RuntimeError):
    """A shared step failed because another worker stopped: TensorFlow's coordination service
    fails the survivors' collectives within seconds, so they stop instead of waiting."""


def _is_peer_failure(error: Exception) -> bool:
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    if isinstance(error, (tf.errors.UnavailableError, tf.errors.AbortedError)):
        return True
    text = str(error)
    return isinstance(error, (tf.errors.InternalError, tf.errors.CancelledError)) and any(
        mark in text for mark in ("Collective", "crashed", "peer")
    )


class DirectPredictor:
    """An inference model under a multi-worker strategy: ``predict_on_batch`` and
    ``predict_sized`` run in a ``tf.function`` on this worker's device, with no collective (the
    strategy's would gather all workers' predictions). Other attributes are the model's."""

    def __init__(self, model: keras.Model) -> None:
        # TensorFlow only here: the package imports and runs on JAX without it
        import tensorflow as tf

        self.model, sized = model, sized_detector(model)
        self._call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._sized = tf.function(lambda x, s: sized([x, s], training=False), reduce_retracing=True)

    def predict_on_batch(self, batch: Any) -> list[Any]:
        return [output.numpy() for output in self._call(batch)]

    def predict_sized(self, batch: Any, sizes: Any) -> list[Any]:
        return [output.numpy() for output in self._sized(batch, sizes)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def any_worker(strategy: Any) -> Any:
    """A function ``flags -> flags``: each of a list of booleans becomes True on every worker
    when it is True on any. One all-reduce: every worker calls it at the same point."""
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    @tf.function
    def agree(flags: Any) -> Any:
        per_replica = strategy.run(lambda: tf.identity(flags))
        return strategy.reduce("SUM", per_replica, axis=None) > 0

    def agreed(flags: list[bool]) -> list[bool]:
        values = agree(tf.constant([1.0 if flag else 0.0 for flag in flags], tf.float32))
        return [bool(value) for value in values.numpy()]

    return agreed


def _trained_batch_norm_statistics(layer: keras.layers.Layer) -> list[Any]:
    found = []
    if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
        found += [layer.moving_mean, layer.moving_variance]
    for child in getattr(layer, "layers", []):
        found += _trained_batch_norm_statistics(child)
    return found


def state_averager(strategy: Any, model: keras.Model) -> Any:
    """A function that sets the moving statistics of the model's trained BatchNormalization
    layers to their mean over all replicas, or None when there are none.

    Each replica updates them from its own images only (they are not gradients, so nothing
    all-reduces them); averaging them at the end of every epoch keeps the workers identical
    and makes the chief's snapshots and evaluation reflect every worker's data. Frozen
    BatchNormalization (the default with pretrained weights) never changes and is left out.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    statistics = _trained_batch_norm_statistics(model)
    if not statistics:
        return None
    sizes = [int(np.prod(variable.shape)) for variable in statistics]

    @tf.function
    def average() -> None:
        # One all-reduce of every statistic, flattened into one vector.
        local = strategy.run(
            lambda: tf.concat([tf.reshape(tf.identity(v), [-1]) for v in statistics], 0)
        )
        mean = strategy.reduce("MEAN", local, axis=None)
        for variable, part in zip(statistics, tf.split(mean, sizes)):
            variable.assign(tf.reshape(part, variable.shape))

    return average


def _losses_by_output(model: keras.Model) -> dict[str, Any]:
    losses = getattr(model, "loss", None)
    if not isinstance(losses, dict) or set(losses) != set(model.output_names):
        raise ValueError(
            "multi-worker training needs the model compiled with one loss per output, "
            f"keyed by {model.output_names}; got {losses!r}"
        )
    return {name: keras.losses.get(loss) for name, loss in losses.items()}


def fit(
    model: keras.Model,
    dataset: Any,
    *,
    epochs: int,
    steps_per_epoch: int,
    initial_epoch: int = 0,
    callbacks: list[keras.callbacks.Callback] | None = None,
    verbose: int = 1,
    strategy: Any = None,
    checkpointer: Any = None,
) -> keras.callbacks.History:
    """``model.fit`` for a compiled RetinaNet under a ``tf.distribute`` strategy.

    Args:
        model: compiled (built in ``strategy.scope()``) with a loss per output.
        dataset: a ``tf.data.Dataset`` that yields ``(images, (regression, classification))``
            with this worker's per-replica batch size, repeated: each worker passes its own.
        epochs: the epoch to stop after (as in ``fit``, counting ``initial_epoch``).
        steps_per_epoch: steps of one epoch; one step takes one batch on every replica.
        initial_epoch: epochs already done.
        callbacks: Keras callbacks; they get the same hooks and logs as under ``fit``
            (``loss``, ``<output>_loss``, running means over the epoch).
        verbose: 0 silent, 1 a progress bar, 2 one line per epoch.
        strategy: the strategy; by default the one in scope (any ``tf.distribute`` strategy,
            including the default one, works).
        checkpointer: a :class:`~keras_retinanet.training.interrupt.Checkpointer` whose flags
            the workers agree on after each step and epoch: a signal to one stops all at once.

    Returns:
        The ``History`` of the epochs run.

    Raises:
        WorkerLost: another worker stopped during the training.
    """
    # TensorFlow only here: the package imports and runs on JAX without it
    import tensorflow as tf

    strategy = strategy if strategy is not None else tf.distribute.get_strategy()
    index, num_workers = worker_position(strategy)
    replicas = strategy.num_replicas_in_sync
    losses = _losses_by_output(model)
    names = list(model.output_names)
    optimizer = model.optimizer
    with strategy.scope():
        if not optimizer.built:
            optimizer.build(model.trainable_variables)

    def replica_step(batch: Any) -> dict[str, Any]:
        images, targets = batch
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            if isinstance(outputs, dict):
                outputs = [outputs[name] for name in names]
            parts = {
                # The mean: a plain loss function returns one value per image, as "mse" does.
                f"{name}_loss": tf.reduce_mean(tf.cast(losses[name](target, output), tf.float32))
                for name, target, output in zip(names, targets, outputs)
            }
            loss = tf.add_n(list(parts.values()))
            if model.losses:
                loss += tf.add_n([tf.cast(extra, tf.float32) for extra in model.losses])
            # Gradients are summed over replicas: divide so that they average, as fit does.
            scaled = optimizer.scale_loss(loss / replicas)
        gradients = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return {"loss": loss, **parts}

    @tf.function
    def train_step(iterator: Any) -> dict[str, Any]:
        per_replica = strategy.run(replica_step, args=(next(iterator),))
        return {k: strategy.reduce("MEAN", v, axis=None) for k, v in per_replica.items()}

    distributed = strategy.distribute_datasets_from_function(lambda context: dataset)
    iterator = iter(distributed)
    agree = any_worker(strategy) if num_workers > 1 else list
    average_state = state_averager(strategy, model) if num_workers > 1 else None

    history = keras.callbacks.History()
    callback_list = keras.callbacks.CallbackList(
        list(callbacks or []) + [history],
        add_progbar=verbose != 0,
        verbose=verbose,
        epochs=epochs,
        steps=steps_per_epoch,
        model=model,
    )
    model.stop_training = False
    callback_list.on_train_begin()
    logs: dict[str, float] = {}
    try:
        for epoch in range(initial_epoch, epochs):
            callback_list.on_epoch_begin(epoch)
            totals: dict[str, float] = {}
            for step in range(steps_per_epoch):
                callback_list.on_train_batch_begin(step)
                with strategy.scope():
                    values = train_step(iterator)
                for key, value in values.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                logs = {key: total / (step + 1) for key, total in totals.items()}
                callback_list.on_train_batch_end(step, logs)
                flags = [model.stop_training]
                if checkpointer is not None:
                    flags += checkpointer.flags(step)
                flags = agree(flags)
                model.stop_training = flags[0]
                if checkpointer is not None:
                    checkpointer.after_step(step, logs, *flags[1:])  # may stop the run
                if model.stop_training:
                    break
            if average_state is not None:
                with strategy.scope():
                    average_state()
            epoch_logs = dict(logs)
            callback_list.on_epoch_end(epoch, epoch_logs)
            stop = checkpointer is not None and checkpointer.stopping()
            model.stop_training, stop = agree([model.stop_training, stop])
            if checkpointer is not None:
                checkpointer.after_epoch(stop)
            if model.stop_training:
                break
    except tf.errors.OpError as e:
        if num_workers > 1 and _is_peer_failure(e):
            said = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WorkerLost(
                f"worker {index} of {num_workers}: a step that all workers share failed, most "
                "likely because another worker stopped (crashed, was killed, or failed: its "
                f"log has the cause). TensorFlow said: {said}"
            ) from e
        raise
    callback_list.on_train_end(logs)
    return history
