"""What a training run is given: :class:`TrainConfig`, and :class:`TrainingError` for the
reasons a run stops that the user must act on."""

from __future__ import annotations

import dataclasses

from keras_retinanet.evaluation.inputs import default_metric
from keras_retinanet.model.anchors import AnchorParameters


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on (the message says which)."""


DEFAULT_LR = 1e-5  # Adam; fizyr's default, stable from ImageNet weights with clipnorm


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
    # Adam's learning rate; None: DEFAULT_LR, or when resuming the snapshot's (which the
    # plateau schedule may have lowered). Given when resuming, it replaces the snapshot's.
    lr: float | None = None
    clipnorm: float | None = 0.001  # per variable; None: no clipping
    image_min_side: int = 800
    image_max_side: int = 1333
    random_transform: bool = False
    snapshot_path: str | None = "./snapshots"  # None: no snapshots
    snapshot_format: str = "keras"
    # The newest 3 epochs: the resume point and two to fall back on if training went bad;
    # each older one is ~146 MB (weights only, see training.snapshots.Snapshot). None: all.
    keep_snapshots: int | None = 3
    tensorboard_dir: str | None = None
    evaluation: bool = True
    metric: str | None = None  # voc07 / voc12 / coco; None: the dataset's (default_metric)
    workers: int = 1
    multiprocessing: bool = False
    seed: int | None = None
    mixed_precision: bool = False
    anchor_parameters: AnchorParameters | None = None
    # "auto": anchors fitted to the training boxes when the defaults leave more than 10% of a
    # class uncovered (training.inputs.auto_anchors); "default": the defaults. Either way
    # anchor_parameters, a resumed snapshot's or a fine-tuned one's anchors come first.
    anchors: str = "auto"
    distribute: str | None = None  # None, "mirrored", "multi_worker" (TF) or "data_parallel"
    num_devices: int | None = None  # devices for "mirrored" / "data_parallel"
    cluster: list[str] | None = None  # "multi_worker": every worker's host:port, chief first
    task_index: int | None = None  # "multi_worker": this machine's position in ``cluster``
    skip_bad_images: bool = False
    max_minutes: float | None = None  # stop after this much wall-clock time
    # A resumable mid-epoch snapshot this often (only the newest is kept; each epoch's snapshot
    # replaces it): a crash or a kill without warning loses at most this much. 30 minutes: on
    # COCO an epoch is hours, and writing a ResNet50 snapshot takes seconds. None: off.
    checkpoint_minutes: float | None = 30.0
    checkpoint_steps: int | None = None  # also (or instead) every this many steps; None: off
    # Trained BatchNormalization (a random start): re-estimate its statistics over this many
    # training batches before each epoch's evaluation and snapshot (training.batch_norm); 0: off.
    batch_norm_batches: int = 20
    callbacks: list = dataclasses.field(default_factory=list)  # extra Keras callbacks, run first
    # The model variant (keras_retinanet.model.variants); None: this package's own, or the one of
    # the snapshot that ``weights`` or ``snapshot`` names (train() fills it in from its metadata).
    variant: dict | None = None
    initial_weights: dict | None = None  # filled in by train(): where a fine-tuning started
    verbose: int = 1

    def evaluation_metric(self) -> str:
        """The per-epoch evaluation's metric: ``metric``, else the dataset's own
        (:func:`keras_retinanet.evaluation.inputs.default_metric`)."""

        return self.metric or default_metric(self.dataset)
