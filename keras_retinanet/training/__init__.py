"""Training a RetinaNet: ``train(TrainConfig(...))``, one module per concern.

* :mod:`~keras_retinanet.training.config`: :class:`TrainConfig` (every option, with the CLI's
  defaults) and :class:`TrainingError`.
* :mod:`~keras_retinanet.training.build`: :func:`compile_model` (Adam, focal and smooth L1)
  and :func:`build_or_resume` (a new model or a resumed snapshot).
* :mod:`~keras_retinanet.training.inputs`: the training and validation generators of a config,
  and :func:`fit_input`, the ``tf.data`` pipeline that feeds them to ``fit`` on TensorFlow.
* :mod:`~keras_retinanet.training.callbacks`: stop on NaN, time limit, JSON and CSV logs.
* :mod:`~keras_retinanet.training.batch_norm`: :class:`PreciseBatchNorm`, the statistics of a
  trained BatchNormalization re-estimated at the end of each epoch.
* :mod:`~keras_retinanet.training.snapshots`: the metadata of a snapshot and the callbacks
  that write one every epoch (atomically) plus the best one.
* :mod:`~keras_retinanet.training.distribute`: the ``mirrored`` / ``multi_worker`` /
  ``data_parallel`` scopes.
* :mod:`~keras_retinanet.training.multi_worker`: the training loop across machines.
* :mod:`~keras_retinanet.training.loop`: :func:`train`, which puts the above together.

The CLI (``keras_retinanet.cli.train``) only parses arguments into a :class:`TrainConfig` and
calls :func:`train`; notebooks and scripts can do the same.
"""

from keras_retinanet.training.build import build_or_resume, compile_model
from keras_retinanet.training.callbacks import CSVLog, JSONLogger, StopOnNaN, TimeLimit
from keras_retinanet.training.config import TrainConfig, TrainingError
from keras_retinanet.training.distribute import distribution_scope, replicas_in_sync
from keras_retinanet.training.inputs import create_generators, fit_input
from keras_retinanet.training.loop import train
from keras_retinanet.training.snapshots import (
    SNAPSHOT_FORMAT_VERSION,
    ShadowSnapshot,
    Snapshot,
    snapshot_metadata,
)

__all__ = [
    "SNAPSHOT_FORMAT_VERSION",
    "CSVLog",
    "JSONLogger",
    "ShadowSnapshot",
    "Snapshot",
    "StopOnNaN",
    "TimeLimit",
    "TrainConfig",
    "TrainingError",
    "build_or_resume",
    "compile_model",
    "create_generators",
    "distribution_scope",
    "fit_input",
    "replicas_in_sync",
    "snapshot_metadata",
    "train",
]
