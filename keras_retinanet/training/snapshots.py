"""Snapshots: what each one records, and the callbacks that write them every epoch.

Snapshots are written with :func:`~keras_retinanet.models.save_model` (temporary file, then an
atomic rename), so a kill during a write leaves the previous snapshot intact. Each one records
the epoch, optimizer state, anchor parameters, class names, backbone, image sizes and the
dataset, so ``--snapshot`` resumes at the next epoch with the same learning rate, and
``retinanet-evaluate snapshot.keras`` needs no other argument.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from typing import Any

import keras

from keras_retinanet.model import retinanet as models
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.variants import get_variant
from keras_retinanet.training.callbacks import StopOnNaN, _finite
from keras_retinanet.training.config import TrainConfig, TrainingError

SNAPSHOT_FORMAT_VERSION = 1
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


class SnapshotSpaceError(TrainingError):
    """The disk filled up while a snapshot was written; the previous snapshots are intact."""


def snapshot_bytes(model: keras.Model, optimizer: bool = True) -> int:
    """About the size of a snapshot of ``model``: its weights, the optimizer's state when it
    is compiled and ``optimizer`` is True, and the file's own few megabytes."""
    variables = list(model.weights)
    state = getattr(getattr(model, "optimizer", None), "variables", None)
    if optimizer and state:
        variables += list(state)
    total = 0
    for variable in variables:
        size = 1
        for dimension in variable.shape:
            size *= int(dimension)
        bits = "".join(c for c in keras.backend.standardize_dtype(variable.dtype) if c.isdigit())
        total += size * max(1, int(bits or 8) // 8)  # float32: 4 bytes, bool: 1
    return total + 2**21


def _out_of_space(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return True
    # h5py and zipfile re-raise some write failures without the errno, keeping its words.
    return "No space left on device" in str(error) or "Disk quota exceeded" in str(error)


def save_snapshot(
    model: keras.Model,
    path: str,
    metadata: dict,
    previous: str | None = None,
    optimizer: bool = True,
) -> str:
    """:func:`~keras_retinanet.models.save_model` (a temporary file, then a rename), with a
    full disk reported as :class:`SnapshotSpaceError`: the folder, the space a snapshot needs
    and has, and ``previous``, the snapshot that is still there to resume from."""
    try:
        return models.save_model(model, path, metadata)
    except (OSError, RuntimeError, ValueError) as e:
        if not _out_of_space(e):
            raise
        folder = os.path.dirname(os.path.abspath(path))
        need = snapshot_bytes(model, optimizer) / 2**20
        free = shutil.disk_usage(folder).free / 2**20
        kept = (
            f"The previous snapshot {previous} is intact: free space (or choose another "
            f"--snapshot-path) and resume with --snapshot {previous}."
            if previous
            else "No earlier snapshot of this run exists; free space or choose another "
            "--snapshot-path and start again."
        )
        raise SnapshotSpaceError(
            f"no space left on the device of {folder} while writing {os.path.basename(path)}: "
            f"a snapshot of this model needs about {need:.0f} MB, {free:.0f} MB are free there. "
            f"Training stopped. {kept}"
        ) from e


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
        "metric": config.evaluation_metric() if config.evaluation else None,  # of logs["mAP"]
        "variant": get_variant(config.variant).to_dict(),
        "initial_weights": config.initial_weights,
    }


class Snapshot(keras.callbacks.Callback):
    """Write a snapshot every epoch and a ``best`` snapshot by a monitored log value.

    Disk use: a ResNet50 snapshot with Adam's two moment tensors is ~440 MB, its weights alone
    ~146 MB. Only a resume needs the optimizer, and only from the newest epoch, so with
    ``light_history`` the newest epoch snapshot is complete and every older one, and
    ``best``, holds the weights alone (still an ordinary snapshot: evaluate, convert, predict
    and export take it; resuming from it restarts Adam). ``best`` is a hard link to its epoch's
    weights file where the file system allows (no second copy), else a copy. Each epoch writes
    the weights-only file too, hidden beside the snapshot, and it takes the snapshot's place
    when the next epoch is written.

    Args:
        directory: folder for the snapshots.
        prefix: file name prefix, e.g. ``resnet50_voc``.
        metadata_fn: ``epoch -> dict`` giving the metadata record of that epoch.
        nan_guard: a :class:`StopOnNaN`; no snapshot is written after it fired.
        monitor: log key of the ``best`` snapshot (higher is better), e.g. ``"mAP"``; when the
            key is absent (no evaluation), ``best`` follows the lowest ``loss`` instead.
        extension: ``".keras"`` or ``".h5"``.
        keep: keep only the newest ``keep`` epoch snapshots; None keeps all. ``best`` is
            always kept.
        light_history: keep the optimizer state in the newest epoch snapshot only (above).
        best: the ``best`` score so far, for a resumed run (the snapshot's ``best`` record).

    Mid-epoch snapshots (:meth:`write_checkpoint`: on a stop signal, or on a clock) are named
    ``{prefix}_{epoch:02d}_step{step:05d}``; only the newest is kept, and the next epoch
    snapshot removes it.
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
        light_history: bool = True,
        best: float | None = None,
    ) -> None:
        super().__init__()
        self.directory = directory
        self.prefix = prefix
        self.metadata_fn = metadata_fn
        self.nan_guard = nan_guard
        self.monitor = monitor
        self.extension = extension
        self.keep = keep
        self.light_history = light_history
        self.best: float | None = best  # a resumed run keeps its snapshot's
        self.last_path: str | None = None
        self.last_checkpoint: str | None = None  # the newest mid-epoch snapshot
        self.best_path: str | None = None
        self._pending: tuple[str, str] | None = None  # (weights-only file, snapshot it replaces)

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
        metadata["best"] = score if is_best else self.best
        self.last_path = save_snapshot(
            self.model, self.path_for(epoch + 1), metadata, previous=self.newest()
        )
        self.last_checkpoint = None
        self.remove_checkpoints()
        self._settle_pending()
        best_source = self.last_path
        if self.light_history:
            hidden = os.path.join(
                self.directory, f".{self.prefix}_{epoch + 1:02d}.weights{self.extension}"
            )
            save_weights_only(
                self.model, hidden, dict(metadata, optimizer=False), previous=self.last_path
            )
            self._pending = (hidden, self.last_path)
            best_source = hidden
        if is_best:
            self.best = score
            self.best_path = os.path.join(self.directory, f"{self.prefix}_best{self.extension}")
            _atomic_link_or_copy(best_source, self.best_path)
        self._prune()

    def newest(self) -> str | None:
        """The newest complete snapshot this run wrote: the one to resume from."""
        return self.last_checkpoint or self.last_path

    def checkpoint_path_for(self, epoch: int, step: int) -> str:
        """The mid-epoch snapshot after ``step`` steps of epoch ``epoch`` (from 0)."""
        name = f"{self.prefix}_{epoch + 1:02d}_step{step:05d}{self.extension}"
        return os.path.join(self.directory, name)

    def write_checkpoint(self, epoch: int, step: int, metadata: dict) -> str:
        """Write a resumable mid-epoch snapshot (weights and optimizer state) and remove the
        previous one."""
        path = save_snapshot(
            self.model, self.checkpoint_path_for(epoch, step), metadata, previous=self.newest()
        )
        self.last_checkpoint = path
        self.remove_checkpoints(keep=path)
        return path

    def remove_checkpoints(self, keep: str | None = None) -> None:
        """Remove the mid-epoch snapshots of this prefix, but ``keep``."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            stem = name[len(self.prefix) + 1 : -len(self.extension)]
            epoch, _, step = stem.partition("_step")
            is_checkpoint = epoch.isdigit() and step.isdigit() and name.endswith(self.extension)
            path = os.path.join(self.directory, name)
            if name.startswith(f"{self.prefix}_") and is_checkpoint and path != keep:
                os.remove(path)

    def on_train_end(self, logs: dict | None = None) -> None:
        # The newest snapshot stays complete (the resume point); its weights-only twin goes.
        if self._pending is not None:
            hidden, _ = self._pending
            if os.path.exists(hidden):
                os.remove(hidden)
            self._pending = None

    def _settle_pending(self) -> None:
        """The previous newest snapshot gives way to its weights-only twin."""
        if self._pending is None:
            return
        hidden, path = self._pending
        self._pending = None
        if os.path.exists(hidden):
            if os.path.exists(path):
                os.replace(hidden, path)
            else:  # pruned meanwhile
                os.remove(hidden)

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


def save_weights_only(
    model: keras.Model, path: str, metadata: dict, previous: str | None = None
) -> str:
    """Save ``model`` without its optimizer: the same layers and weights, uncompiled."""
    bare = keras.Model(model.inputs, model.outputs, name=model.name)
    return save_snapshot(bare, path, metadata, previous=previous, optimizer=False)


class ShadowSnapshot(Snapshot):
    """What a worker other than the chief does where the chief writes a snapshot: save the
    model to a temporary folder and delete it. Saving under ``MultiWorkerMirroredStrategy``
    creates variables, whose initial values the chief broadcasts to every worker, so every
    worker must save at the same points or the chief waits forever. ``last_path`` and
    :meth:`write_checkpoint` give the names the chief writes, in ``chief_directory`` (this
    worker's ``--snapshot-path``: the chief's folder where the file system is shared)."""

    def __init__(
        self,
        nan_guard: StopOnNaN | None = None,
        extension: str = ".keras",
        chief_directory: str | None = None,
        prefix: str = "",
    ) -> None:
        super().__init__(
            chief_directory or "", prefix, metadata_fn=None, nan_guard=nan_guard,
            extension=extension,
        )  # fmt: skip

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.should_save(logs or {}):
            self._shadow_save()
            self.last_path = self.path_for(epoch + 1) if self.directory else None

    def write_checkpoint(self, epoch: int, step: int, metadata: dict) -> str | None:
        self._shadow_save()
        return self.checkpoint_path_for(epoch, step) if self.directory else None

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def _shadow_save(self) -> None:
        with tempfile.TemporaryDirectory(prefix="retinanet-shadow-") as directory:
            self.model.save(os.path.join(directory, f"shadow{self.extension}"))


def _atomic_link_or_copy(source: str, destination: str) -> None:
    """Hard-link (else copy) to a temporary name beside ``destination``, then rename it into
    place, so ``destination`` is always a whole file."""
    temporary = f"{destination}.tmp-{os.getpid()}"
    try:
        try:
            os.link(source, temporary)
        except OSError:  # no hard links here (another device, FAT, some network drives)
            shutil.copyfile(source, temporary)
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
