"""Training: compiling, snapshots that survive failure, callbacks, and the fit loop.

The CLI (``keras_retinanet.cli.train``) only parses arguments into a :class:`TrainConfig` and
calls :func:`train`; notebooks and scripts can do the same.

Snapshots are written with :func:`keras_retinanet.models.save_model` (temporary file, then an
atomic rename), so a kill during a write leaves the previous snapshot intact. Each one records
the epoch, optimizer state, anchor parameters, class names, backbone, image sizes and the
dataset, so ``--snapshot`` resumes at the next epoch with the same learning rate, and
``retinanet-evaluate snapshot.keras`` needs no other argument.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from typing import Any

import keras

from keras_retinanet import losses, models, multi_worker
from keras_retinanet.anchors import AnchorParameters

SNAPSHOT_FORMAT_VERSION = 1


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on (the message says which)."""


@dataclasses.dataclass
class TrainConfig:
    """Everything :func:`train` needs. Defaults match ``retinanet-train``'s."""

    dataset: dict  # a record as in keras_retinanet.preprocessing.factory
    backbone: str = "resnet50"
    weights: str | None = "imagenet"
    snapshot: str | None = None  # resume from this file
    freeze_backbone: bool = False
    batch_size: int = 1
    epochs: int = 50
    steps: int | None = None  # per epoch; None: the whole training set
    lr: float = 1e-5  # Adam; fizyr's default, stable from ImageNet weights with clipnorm
    clipnorm: float | None = 0.001  # per variable; None: no clipping
    image_min_side: int = 800
    image_max_side: int = 1333
    random_transform: bool = False
    snapshot_path: str | None = "./snapshots"  # None: no snapshots
    snapshot_format: str = "keras"
    keep_snapshots: int | None = None  # None: keep every epoch's snapshot
    tensorboard_dir: str | None = None
    evaluation: bool = True
    workers: int = 1
    multiprocessing: bool = False
    seed: int | None = None
    mixed_precision: bool = False
    anchor_parameters: AnchorParameters | None = None
    distribute: str | None = None  # None, "mirrored", "multi_worker" (TF) or "data_parallel"
    num_devices: int | None = None  # devices for "mirrored" / "data_parallel"
    cluster: list[str] | None = None  # "multi_worker": every worker's host:port, chief first
    task_index: int | None = None  # "multi_worker": this machine's position in ``cluster``
    skip_bad_images: bool = False
    max_minutes: float | None = None  # stop after this much wall-clock time
    callbacks: list = dataclasses.field(default_factory=list)  # extra Keras callbacks, run first
    verbose: int = 1


def compile_model(
    model: keras.Model, lr: float = 1e-5, clipnorm: float | None = 0.001
) -> keras.Model:
    """Compile with Adam, smooth L1 on ``regression`` and focal loss on ``classification``."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr, clipnorm=clipnorm),
        loss={"regression": losses.smooth_l1(), "classification": losses.focal()},
    )
    return model


def snapshot_metadata(
    config: TrainConfig, classes: list[str], epoch: int, params: AnchorParameters
) -> dict:
    """The record stored inside every snapshot (see the module docstring)."""
    return {
        "format_version": SNAPSHOT_FORMAT_VERSION,
        "model": "training",
        "epoch": int(epoch),
        "classes": list(classes),
        "num_classes": len(classes),
        "backbone": config.backbone,
        "anchor_parameters": params.to_dict(),
        "image_min_side": int(config.image_min_side),
        "image_max_side": int(config.image_max_side),
        "dataset": config.dataset,
    }


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first non-finite batch loss and remember where, so that no snapshot of the
    broken weights is written and :func:`train` can raise a clear error."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss) and self.failed_at is None:
            self.failed_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class Snapshot(keras.callbacks.Callback):
    """Write a snapshot every epoch and a ``best`` snapshot by a monitored log value.

    Args:
        directory: folder for the snapshots.
        prefix: file name prefix, e.g. ``resnet50_voc``.
        metadata_fn: ``epoch -> dict`` giving the metadata record of that epoch.
        nan_guard: a :class:`StopOnNaN`; no snapshot is written after it fired.
        monitor: log key of the ``best`` snapshot (higher is better), e.g. ``"mAP"``; when the
            key is absent (no evaluation), ``best`` follows the lowest ``loss`` instead.
        extension: ``".keras"`` or ``".h5"``.
        keep: keep only the newest ``keep`` epoch snapshots (each holds the weights and Adam's
            two moment tensors, ~440 MB for ResNet50); None keeps all. ``best`` is always kept.
    """

    def __init__(
        self,
        directory: str,
        prefix: str,
        metadata_fn: Any,
        nan_guard: StopOnNaN | None = None,
        monitor: str = "mAP",
        extension: str = ".keras",
        keep: int | None = None,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.prefix = prefix
        self.metadata_fn = metadata_fn
        self.nan_guard = nan_guard
        self.monitor = monitor
        self.extension = extension
        self.keep = keep
        self.best: float | None = None
        self.last_path: str | None = None
        self.best_path: str | None = None

    def path_for(self, epoch: int) -> str:
        return os.path.join(self.directory, f"{self.prefix}_{epoch:02d}{self.extension}")

    def should_save(self, logs: dict) -> bool:
        """False after a non-finite loss: the weights are broken."""
        if self.nan_guard is not None and self.nan_guard.failed_at is not None:
            return False
        return _finite(logs.get("loss", 0.0))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not self.should_save(logs):
            return
        metadata = self.metadata_fn(epoch + 1)
        if self.monitor in logs and _finite(logs[self.monitor]):
            score, key = float(logs[self.monitor]), self.monitor
        else:
            score, key = -float(logs.get("loss", 0.0)), "loss"
        is_best = self.best is None or score > self.best
        metadata["logs"] = {k: float(v) for k, v in logs.items() if _finite(v)}
        metadata["best_by"] = key
        self.last_path = models.save_model(self.model, self.path_for(epoch + 1), metadata)
        if is_best:
            self.best = score
            self.best_path = os.path.join(self.directory, f"{self.prefix}_best{self.extension}")
            _atomic_copy(self.last_path, self.best_path)
        self._prune()

    def _prune(self) -> None:
        if not self.keep:
            return
        prefix = f"{self.prefix}_"
        epochs = []
        for name in os.listdir(self.directory):
            stem = name[len(prefix) : -len(self.extension)]
            if name.startswith(prefix) and name.endswith(self.extension) and stem.isdigit():
                epochs.append(int(stem))
        for old in sorted(epochs)[: -self.keep]:
            os.remove(self.path_for(old))


class ShadowSnapshot(Snapshot):
    """What a worker other than the chief does where the chief writes a snapshot: save the
    model to a temporary folder and delete it. Saving under ``MultiWorkerMirroredStrategy``
    creates variables, whose initial values the chief broadcasts to every worker, so every
    worker must save at the same points or the chief waits forever."""

    def __init__(self, nan_guard: StopOnNaN | None = None, extension: str = ".keras") -> None:
        super().__init__("", "", metadata_fn=None, nan_guard=nan_guard, extension=extension)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.should_save(logs or {}):
            with tempfile.TemporaryDirectory(prefix="retinanet-shadow-") as directory:
                self.model.save(os.path.join(directory, f"shadow{self.extension}"))


def _atomic_copy(source: str, destination: str) -> None:
    """Copy to a temporary file beside ``destination``, then rename it into place."""
    temporary = f"{destination}.tmp-{os.getpid()}"
    try:
        shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class TimeLimit(keras.callbacks.Callback):
    """Stop training once ``minutes`` of wall-clock time have passed (checked every batch; the
    current epoch ends early, so its evaluation and snapshot still happen)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.minutes = float(minutes)
        self._start = 0.0
        self.stopped = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.monotonic() - self._start > self.minutes * 60:
            self.stopped = True
            self.model.stop_training = True


class JSONLogger(keras.callbacks.Callback):
    """Append every epoch's logs (losses, learning rate, mAP, and the seconds since training
    started) as one JSON line."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._start = time.monotonic()

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = {"epoch": epoch + 1, "seconds": round(time.monotonic() - self._start, 1)}
        record.update({k: float(v) for k, v in (logs or {}).items() if _finite(v)})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class CSVLog(keras.callbacks.Callback):
    """Every epoch's logs as one row of a CSV file, in the format of Keras' ``CSVLogger``
    (``epoch`` from 0, then the keys in sorted order), safe to resume with other settings.

    Keras' ``CSVLogger``, appending, writes the new rows in the new run's column order under
    the old header, so a training resumed with evaluation turned on or off had its mAP and
    loss columns shifted. Here a key that is new to the file is added as a column (left blank
    in the earlier rows), a key that is missing leaves its cell blank, and the file is
    rewritten through a temporary file and a rename, so a kill mid-write keeps the old one.

    Args:
        path: the CSV file.
        append: keep the rows already in ``path`` (resuming) instead of starting afresh.
    """

    def __init__(self, path: str, append: bool = False) -> None:
        super().__init__()
        self.path = path
        self.append = append

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.append and os.path.exists(self.path):
            os.remove(self.path)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        header, rows = ["epoch"], []
        if os.path.isfile(self.path):
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or header)
                rows = list(reader)
        row = {"epoch": str(epoch)}
        for key, value in sorted((logs or {}).items()):
            try:
                row[key] = str(float(value))  # "nan" for a NaN loss, as CSVLogger writes
            except (TypeError, ValueError):
                continue
            if key not in header:
                header.append(key)
        rows.append(row)
        temporary = f"{self.path}.tmp-{os.getpid()}"
        try:
            with open(temporary, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)


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
        import tensorflow as tf

        if tf.distribute.has_strategy():
            return int(tf.distribute.get_strategy().num_replicas_in_sync)
    distribution = keras.distribution.distribution()
    if distribution is not None:
        mesh = getattr(distribution, "device_mesh", None)
        if mesh is not None:
            return math.prod(mesh.shape)
    return 1


class ReshuffleEachEpoch(keras.callbacks.Callback):
    """Call the generator's ``on_epoch_end`` (new shuffled groups) when it is fed through
    ``tf.data``, which does not call it (see :func:`fit_input`)."""

    def __init__(self, generator: Any) -> None:
        super().__init__()
        self.generator = generator

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.generator.on_epoch_end()


def fit_input(generator: Any) -> tuple[Any, list[keras.callbacks.Callback]]:
    """What to pass to ``model.fit`` for a generator, and the callbacks that go with it.

    On JAX and PyTorch, the ``PyDataset`` itself. On TensorFlow, Keras' ``PyDataset`` adapter
    fixes the input signature from the first two batches, so a later batch of another image
    size fails ("yielded an element of shape ... where ... was expected"); detection batches
    vary in size, so there the batches are fed through ``tf.data`` with a fully dynamic
    signature instead, loaded by ``generator.workers`` parallel calls.
    """
    if keras.backend.backend() != "tensorflow":
        return generator, []
    import numpy as np
    import tensorflow as tf

    num_classes = generator.num_classes()

    def load(index: Any) -> tuple[Any, Any, Any]:
        images, (regression, classification) = generator[int(index)]
        return (
            np.asarray(images, dtype=np.float32),
            np.asarray(regression, dtype=np.float32),
            np.asarray(classification, dtype=np.float32),
        )

    def load_tf(index: Any) -> tuple[Any, tuple[Any, Any]]:
        images, regression, classification = tf.numpy_function(
            load, [index], [tf.float32, tf.float32, tf.float32]
        )
        images.set_shape((None, None, None, 3))
        regression.set_shape((None, None, 5))
        classification.set_shape((None, None, num_classes + 1))
        return images, (regression, classification)

    workers = max(1, int(getattr(generator, "workers", 1) or 1))
    dataset = tf.data.Dataset.range(len(generator)).repeat()
    dataset = dataset.map(load_tf, num_parallel_calls=workers, deterministic=True)
    dataset = dataset.prefetch(max(2, workers))
    return dataset, [ReshuffleEachEpoch(generator)]


def _generator_kwargs(config: TrainConfig, params: AnchorParameters) -> dict:
    return {
        "batch_size": config.batch_size,
        "image_min_side": config.image_min_side,
        "image_max_side": config.image_max_side,
        "anchor_parameters": params,
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
    from keras_retinanet.preprocessing.factory import create_generator

    transform = None
    if config.random_transform:
        from keras_retinanet.preprocessing.transform import random_transform

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
        if model.optimizer is None:
            compile_model(model, config.lr, config.clipnorm)
        return model, int(metadata.get("epoch", 0))
    model = models.retinanet_model(
        num_classes,
        backbone=config.backbone,
        weights=config.weights,
        freeze_backbone=config.freeze_backbone,
        anchor_parameters=params,
    )
    return compile_model(model, config.lr, config.clipnorm), 0


def train(config: TrainConfig) -> dict:
    """Train a RetinaNet as configured.

    Returns:
        ``{"history": {key: [values per epoch]}, "last_snapshot": path | None,
        "best_snapshot": path | None, "log_csv": path | None, "model": keras.Model,
        "epochs_done": int}``.

    Raises:
        TrainingError: a non-finite loss (the last good snapshot is kept and named), or a
            configuration that does not fit the data.
    """
    previous_policy = keras.mixed_precision.global_policy()
    try:
        with distribution_scope(
            config.distribute, config.num_devices, config.cluster, config.task_index
        ):
            return _train(config)
    finally:
        # Leave the process as it was: the next model built here is not float16 or sharded.
        keras.mixed_precision.set_global_policy(previous_policy)


def _check_epochs_left(done: int, epochs: int) -> None:
    if done >= epochs:
        raise TrainingError(
            f"the snapshot already has {done} epochs and --epochs is {epochs}; "
            "raise --epochs to train further"
        )


def _train(config: TrainConfig) -> dict:
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    if config.snapshot_format not in ("keras", "h5"):
        raise TrainingError(f"snapshot format must be keras or h5, got {config.snapshot_format}")

    params = config.anchor_parameters
    if config.snapshot:
        metadata = models.read_metadata(config.snapshot)
        _check_epochs_left(int(metadata.get("epoch", 0)), config.epochs)  # before any loading
        if params is None and metadata.get("anchor_parameters"):
            params = AnchorParameters.from_dict(metadata["anchor_parameters"])
    params = params or AnchorParameters()

    replicas = replicas_in_sync()
    if config.batch_size % replicas:
        raise TrainingError(
            f"--batch-size {config.batch_size} does not split evenly over {replicas} "
            f"devices; use a multiple of {replicas}"
        )
    cluster_strategy = multi_worker.active_strategy()
    chief = cluster_strategy is None or multi_worker.is_chief(cluster_strategy)
    shadow_snapshots = False
    if cluster_strategy is None:
        shard, generator_batch = None, None
    else:
        # Each worker reads its own part of the data, one per-replica batch at a time.
        shard = multi_worker.worker_position(cluster_strategy)
        generator_batch = config.batch_size // replicas
        # Only the chief evaluates and writes; the others wait for it in the next step (but
        # save where it saves: see ShadowSnapshot).
        if not chief:
            shadow_snapshots = config.snapshot_path is not None
            config = dataclasses.replace(
                config, evaluation=False, snapshot_path=None, tensorboard_dir=None
            )
    train_generator, validation_generator = create_generators(
        config, params, full_batches=replicas > 1, shard=shard, batch_size=generator_batch
    )
    model, initial_epoch = build_or_resume(config, train_generator.num_classes(), params)
    classes = [train_generator.label_to_name(i) for i in range(train_generator.num_classes())]
    _check_epochs_left(initial_epoch, config.epochs)

    nan_guard = StopOnNaN()
    callbacks: list[keras.callbacks.Callback] = [*config.callbacks, nan_guard]
    if config.max_minutes:
        callbacks.append(TimeLimit(config.max_minutes))
    if validation_generator is not None and validation_generator.size() > 0:
        from keras_retinanet.evaluation.callback import Evaluate

        # Before the loggers, the LR schedule and the snapshots, so they all see logs["mAP"].
        callbacks.append(
            Evaluate(
                validation_generator,
                anchor_parameters=params,
                tensorboard_dir=config.tensorboard_dir,
                verbose=config.verbose,
            )
        )
    callbacks.append(
        keras.callbacks.ReduceLROnPlateau(
            monitor="loss", factor=0.1, patience=2, verbose=config.verbose, min_lr=1e-10
        )
    )
    if config.tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=config.tensorboard_dir))

    snapshot_callback, log_csv = None, None
    if config.snapshot_path:
        os.makedirs(config.snapshot_path, exist_ok=True)
        log_csv = os.path.join(config.snapshot_path, "training_log.csv")
        callbacks.append(CSVLog(log_csv, append=initial_epoch > 0))
        callbacks.append(JSONLogger(os.path.join(config.snapshot_path, "training_log.jsonl")))
        snapshot_callback = Snapshot(
            config.snapshot_path,
            prefix=f"{config.backbone}_{config.dataset.get('type', 'data')}",
            metadata_fn=lambda epoch: snapshot_metadata(config, classes, epoch, params),
            nan_guard=nan_guard,
            extension=f".{config.snapshot_format}",
            keep=config.keep_snapshots,
        )
        callbacks.append(snapshot_callback)
    if shadow_snapshots:
        callbacks.append(ShadowSnapshot(nan_guard, extension=f".{config.snapshot_format}"))

    data, data_callbacks = fit_input(train_generator)
    callbacks = data_callbacks + callbacks
    if cluster_strategy is None:
        history = model.fit(
            data,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            steps_per_epoch=config.steps or len(train_generator),
            shuffle=False,  # the generator shuffles its own aspect-ratio groups
            callbacks=callbacks,
            verbose=config.verbose,
        )
    else:
        # The same number of steps on every worker: an epoch is the whole dataset over all.
        steps = config.steps or math.ceil(train_generator.size() / config.batch_size)
        try:
            history = multi_worker.fit(
                model,
                data,
                epochs=config.epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=config.verbose,
                strategy=cluster_strategy,
            )
        except multi_worker.WorkerLost as e:
            last = snapshot_callback.last_path if snapshot_callback else None
            resume = last or (config.snapshot if chief else None)  # the chief's may be newer
            where = f"--snapshot {resume}" if resume else "the chief's last snapshot (if any)"
            raise TrainingError(f"{e}. Restart every worker with {where}.") from e

    last = snapshot_callback.last_path if snapshot_callback else None
    if nan_guard.failed_at is not None:
        epoch, batch = nan_guard.failed_at
        kept = last or (config.snapshot if config.snapshot else None)
        if not chief:
            kept = "in the chief's log (worker 0 writes the snapshots)"
        raise TrainingError(
            f"the loss became NaN or infinite at epoch {epoch}, batch {batch}; training stopped. "
            f"The last good snapshot is {kept or 'none (no epoch finished)'}. Lower --lr, check "
            "the annotations (retinanet-debug), or resume from that snapshot."
        )
    if log_csv and os.path.isfile(log_csv):
        from keras_retinanet.visualization import plot_training_log

        with contextlib.suppress(ValueError):
            plot_training_log(log_csv, os.path.join(config.snapshot_path, "training_log.png"))
    return {
        "history": history.history,
        "last_snapshot": last,
        "best_snapshot": snapshot_callback.best_path if snapshot_callback else None,
        "log_csv": log_csv,
        "model": model,
        "epochs_done": initial_epoch + len(history.history.get("loss", [])),
        "classes": classes,
        "anchor_parameters": params,
    }
