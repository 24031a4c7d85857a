"""The training run: :func:`train` puts a :class:`TrainConfig`'s generators, model, callbacks
and distribution together and fits (through ``model.fit``, or the multi-worker loop)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
from typing import Any

import keras

from keras_retinanet.evaluation.callback import Evaluate
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.backbones import preset_variant
from keras_retinanet.model.variants import variant_from_metadata
from keras_retinanet.training import multi_worker
from keras_retinanet.training.batch_norm import PreciseBatchNorm
from keras_retinanet.training.build import build_compiled_state, build_or_resume, compile_model
from keras_retinanet.training.callbacks import CSVLog, JSONLogger, Plateau, StopOnNaN, TimeLimit
from keras_retinanet.training.config import TrainConfig, TrainingError
from keras_retinanet.training.distribute import distribution_scope, replicas_in_sync
from keras_retinanet.training.finetune import fine_tune_model, snapshot_start, start_record
from keras_retinanet.training.inputs import auto_anchors, create_generators, fit_input
from keras_retinanet.training.interrupt import (
    Checkpointer,
    ResumedEpochLogs,
    ResumePoint,
    StopRequest,
    TrainingInterrupted,
    resume_point,
    stop_signals,
)
from keras_retinanet.training.snapshots import (
    ShadowSnapshot,
    Snapshot,
    SnapshotSpaceError,
    snapshot_metadata,
)
from keras_retinanet.visualization import plot_training_log


def _direct_predictor_under_a_cluster(model: keras.Model) -> keras.Model:
    """The evaluation's inference model, called directly on this worker under a multi-worker
    strategy, whose ``predict_on_batch`` would gather every worker's batch into one."""
    if multi_worker.active_strategy() is not None:
        return multi_worker.DirectPredictor(model)
    return model


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
    start = None if config.snapshot else snapshot_start(config.weights)
    resumed: dict = {}  # the resumed snapshot's record
    if config.snapshot or start:
        metadata = models.read_metadata(config.snapshot) if config.snapshot else start
        if config.snapshot:
            _check_epochs_left(int(metadata.get("epoch", 0)), config.epochs)  # before loading
            resumed = metadata
        if params is None and metadata.get("anchor_parameters"):
            params = AnchorParameters.from_dict(metadata["anchor_parameters"])
        config = dataclasses.replace(
            config,
            variant=variant_from_metadata(metadata).to_dict(),
            backbone=metadata.get("backbone", config.backbone),
            initial_weights=metadata.get("initial_weights") if config.snapshot else None,
        )
        if resumed.get("data_seed") is not None and config.seed is None:
            # The data order (shuffle, augmentation) goes on from the resumed run's seed.
            config = dataclasses.replace(config, seed=int(resumed["data_seed"]))
    if config.variant is None:  # the backbone preset's (mobilenet_v3_large_lite: "lite")
        config = dataclasses.replace(config, variant=preset_variant(config.backbone).to_dict())
    if config.anchors not in ("auto", "default"):
        raise TrainingError(f"anchors must be auto or default, got {config.anchors!r}")
    if params is None and config.anchors == "auto":
        params, message = auto_anchors(config)
        if config.verbose:
            print(message, flush=True)
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
    snapshot_folder = config.snapshot_path  # the chief's, named in every worker's messages
    prefix = f"{config.backbone}_{config.dataset.get('type', 'data')}"
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
    classes = [train_generator.label_to_name(i) for i in range(train_generator.num_classes())]
    if start:
        model = fine_tune_model(config.weights, start, classes, params, config.freeze_backbone)
        model = compile_model(model, config.lr, config.clipnorm, variant_from_metadata(start))
        initial_epoch = 0
        config = dataclasses.replace(
            config, initial_weights=start_record(config.weights, start, classes)
        )
    else:
        model, initial_epoch = build_or_resume(config, train_generator.num_classes(), params)
    _check_epochs_left(initial_epoch, config.epochs)

    if cluster_strategy is None:
        steps_per_epoch = config.steps or len(train_generator)
    else:  # the same number of steps on every worker: an epoch is the whole dataset over all
        steps_per_epoch = config.steps or math.ceil(train_generator.size() / config.batch_size)

    nan_guard = StopOnNaN()
    callbacks: list[keras.callbacks.Callback] = [*config.callbacks, nan_guard]
    if config.max_minutes:
        callbacks.append(TimeLimit(config.max_minutes))
    if config.batch_norm_batches and cluster_strategy is None:
        # Before the evaluation and the snapshots, so both use the re-estimated statistics.
        # Under a cluster each worker would estimate its own; the moving averages stay.
        callbacks.append(
            PreciseBatchNorm(
                train_generator, config.batch_norm_batches, config.verbose, steps_per_epoch
            )
        )
    if validation_generator is not None and validation_generator.size() > 0:
        # Before the loggers, the LR schedule and the snapshots, so they all see logs["mAP"].
        callbacks.append(
            Evaluate(
                validation_generator,
                metric=config.evaluation_metric(),
                anchor_parameters=params,
                tensorboard_dir=config.tensorboard_dir,
                verbose=config.verbose,
                wrap_model=_direct_predictor_under_a_cluster,
            )
        )
    plateau = Plateau(
        restore=resumed.get("plateau"),
        monitor="loss",
        factor=0.1,
        patience=2,
        verbose=config.verbose,
        min_lr=1e-10,
    )
    callbacks.append(plateau)
    if config.tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=config.tensorboard_dir))

    resume = resume_point(resumed, steps_per_epoch, config.snapshot) if resumed else None

    def metadata_of(epoch: int, point: ResumePoint | None = None) -> dict:
        record = snapshot_metadata(config, classes, epoch, params)
        record["resume"] = (point or ResumePoint(epoch, 0)).record(steps_per_epoch)
        record["plateau"] = plateau.state()
        record["data_seed"] = train_generator.base_seed
        if snapshot_callback is not None and snapshot_callback.best is not None:
            record["best"] = snapshot_callback.best  # Snapshot.on_epoch_end updates it after
        return record

    snapshot_callback, log_csv = None, None
    if config.snapshot_path:
        os.makedirs(config.snapshot_path, exist_ok=True)
        log_csv = os.path.join(config.snapshot_path, "training_log.csv")
        callbacks.append(CSVLog(log_csv, append=initial_epoch > 0))
        callbacks.append(JSONLogger(os.path.join(config.snapshot_path, "training_log.jsonl")))
        snapshot_callback = Snapshot(
            config.snapshot_path,
            prefix=prefix,
            metadata_fn=metadata_of,
            nan_guard=nan_guard,
            extension=f".{config.snapshot_format}",
            keep=config.keep_snapshots,
            # Under a cluster every worker must save at the same points (ShadowSnapshot):
            # the chief writes complete snapshots only.
            light_history=cluster_strategy is None,
            best=resumed.get("best"),
        )
        callbacks.append(snapshot_callback)
    if shadow_snapshots:
        snapshot_callback = ShadowSnapshot(
            nan_guard, f".{config.snapshot_format}", chief_directory=snapshot_folder, prefix=prefix
        )
        callbacks.append(snapshot_callback)

    request = StopRequest()
    writer = snapshot_callback

    def write_checkpoint(point: ResumePoint) -> str | None:
        if writer is None or nan_guard.failed_at is not None:  # never a snapshot of NaN weights
            return None
        return writer.write_checkpoint(point.epoch, point.step, metadata_of(point.epoch, point))

    request.last_good = lambda: writer.newest() if writer else None
    checkpointer = Checkpointer(
        request,
        write_checkpoint,
        steps_per_epoch,
        resume=resume,
        every_minutes=config.checkpoint_minutes,
        every_steps=config.checkpoint_steps,
        epoch_snapshot=lambda: writer.last_path if writer else None,
        under_cluster=cluster_strategy is not None,
    )
    # First the epoch means over a resumed epoch's every step; last, the stop and the
    # periodic snapshots, after the epoch's own snapshot.
    callbacks = [ResumedEpochLogs(resume, steps_per_epoch), *callbacks, checkpointer]

    try:
        with stop_signals(request):
            history = _fit(
                model,
                train_generator,
                callbacks,
                initial_epoch,
                config.epochs,
                steps_per_epoch,
                resume,
                cluster_strategy,
                config.verbose,
                checkpointer,
            )
    except (TrainingInterrupted, SnapshotSpaceError):
        if snapshot_callback is not None:
            snapshot_callback.on_train_end()  # the newest epoch snapshot stays complete
        raise
    except multi_worker.WorkerLost as e:
        last = snapshot_callback.last_path if snapshot_callback else None
        resume_from = last or (config.snapshot if chief else None)  # the chief's may be newer
        where = f"--snapshot {resume_from}" if resume_from else "the chief's last snapshot"
        raise TrainingError(f"{e}. Restart every worker with {where}.") from e

    last = snapshot_callback.last_path if snapshot_callback and chief else None
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
        with contextlib.suppress(ValueError):
            plot_training_log(log_csv, os.path.join(config.snapshot_path, "training_log.png"))
    return {
        "history": history,
        "last_snapshot": last,
        "best_snapshot": snapshot_callback.best_path if snapshot_callback else None,
        "log_csv": log_csv,
        "model": model,
        "epochs_done": initial_epoch + len(history.get("loss", [])),
        "classes": classes,
        "anchor_parameters": params,
    }


def _fit(
    model: keras.Model,
    generator: Any,
    callbacks: list[keras.callbacks.Callback],
    initial_epoch: int,
    epochs: int,
    steps_per_epoch: int,
    resume: ResumePoint | None,
    cluster_strategy: Any,
    verbose: int,
    checkpointer: Checkpointer,
) -> dict:
    """Fit from ``initial_epoch`` to ``epochs``; a run resumed mid-epoch first fits the rest
    of that epoch (``steps_per_epoch - resume.step`` steps), then the epochs after it. Returns
    the merged history."""
    spans = []  # (first epoch, end epoch, steps per epoch, first training step)
    first = initial_epoch
    if resume is not None and resume.step:
        left = steps_per_epoch - resume.step
        spans.append((first, first + 1, left, first * steps_per_epoch + resume.step))
        first += 1
    if first < epochs:
        spans.append((first, epochs, steps_per_epoch, first * steps_per_epoch))
    build_compiled_state(model)
    merged: dict[str, list] = {}
    for begin, end, steps, first_step in spans:
        data, _ = fit_input(generator, first_step=first_step)
        if cluster_strategy is None:
            history = model.fit(
                data,
                epochs=end,
                initial_epoch=begin,
                steps_per_epoch=steps,
                shuffle=False,  # the generator shuffles its own aspect-ratio groups
                callbacks=callbacks,
                verbose=verbose,
            )
        else:
            history = multi_worker.fit(
                model,
                data,
                epochs=end,
                initial_epoch=begin,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=verbose,
                strategy=cluster_strategy,
                checkpointer=checkpointer,
            )
        for key, values in history.history.items():
            merged.setdefault(key, []).extend(values)
        if model.stop_training:  # a time limit, a NaN loss
            break
    return merged
