"""A Keras callback that reports the mAP of the training model at the end of epochs."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import keras

from keras_retinanet.evaluation.runner import METRICS, EvaluationResult, evaluate
from keras_retinanet.model.retinanet import retinanet_box
from keras_retinanet.model.settings import DetectionSettings


class Evaluate(keras.callbacks.Callback):
    """Evaluate the model on a data set every ``every`` epochs and put the mAP in the logs.

    ``logs["mAP"]`` is set in ``on_epoch_end``; Keras hands the same ``logs`` dict to the
    callbacks that come after this one, so ``ReduceLROnPlateau(monitor="mAP")``,
    ``ModelCheckpoint``, ``CSVLogger`` or ``TensorBoard`` placed after it see the value. On
    epochs that are skipped (``every > 1``) the key is absent.

    The inference model is built once, in ``on_train_begin``, with
    :func:`keras_retinanet.model.retinanet.retinanet_box`: it shares the training model's layers and
    weights, so it always predicts with the current weights. ``wrap_model`` adapts it to the
    way training runs (training passes a multi-worker strategy's direct predictor).

    Args:
        generator: the validation data (a
            :class:`keras_retinanet.preprocessing.generator.Generator`, best with
            ``shuffle=False``).
        settings: the detection settings (its score threshold; see
            :func:`keras_retinanet.evaluation.runner.evaluate`); None: the defaults.
        score_threshold: the settings' score threshold, changed (None: as it is).
        max_detections: see :func:`keras_retinanet.evaluation.runner.evaluate`.
        iou_threshold: see :func:`keras_retinanet.evaluation.runner.evaluate`.
        metric: ``"voc07"``, ``"voc12"`` or ``"coco"``.
        every: evaluate after epochs ``every, 2 * every, ...`` (1-based).
        tensorboard_dir: when given, ``mAP`` and each class's ``AP/<name>`` are written as
            TensorBoard scalars under ``<tensorboard_dir>/evaluation`` (needs TensorFlow and
            TensorBoard; without them a note is printed once and nothing is written).
        anchor_parameters: the anchors the model is trained with; by default the
            generator's.
        batch_size: images per model call during evaluation.
        verbose: 0 silent, 1 a progress bar and the mAP, 2 also the AP of every class.
        wrap_model: called on the inference model once it is built; what it returns is what
            evaluation predicts with. None: the model itself.
    """

    def __init__(
        self,
        generator: Any,
        settings: DetectionSettings | None = None,
        score_threshold: float | None = None,
        max_detections: int = 100,
        iou_threshold: float = 0.5,
        metric: str = "voc07",
        every: int = 1,
        tensorboard_dir: str | os.PathLike | None = None,
        anchor_parameters: Any = None,
        batch_size: int = 1,
        verbose: int = 1,
        wrap_model: Any = None,
    ) -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.generator = generator
        self.settings = (settings or DetectionSettings()).with_options(
            score_threshold=score_threshold
        )
        self.score_threshold = self.settings.score_threshold
        self.wrap_model = wrap_model
        self.max_detections = max_detections
        self.iou_threshold = iou_threshold
        self.metric = metric
        self.every = int(every)
        self.tensorboard_dir = None if tensorboard_dir is None else os.fspath(tensorboard_dir)
        self.anchor_parameters = anchor_parameters
        self.batch_size = batch_size
        self.verbose = verbose
        self.result: EvaluationResult | None = None
        """The latest evaluation."""
        self._inference_model = None
        self._writer = None
        self._tensorboard_checked = False

    def _build_inference_model(self) -> Any:
        anchor_parameters = self.anchor_parameters or getattr(
            self.generator, "anchor_parameters", None
        )
        model = retinanet_box(
            self.model,
            anchor_parameters=anchor_parameters,
            settings=self.settings.replace(max_detections=self.max_detections),
            variant=getattr(self.generator, "variant", None),
            fold_batch_norm=False,  # share the training model's layers, which keep changing
        )
        return self.wrap_model(model) if self.wrap_model is not None else model

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._inference_model = self._build_inference_model()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if (epoch + 1) % self.every:
            return
        if self._inference_model is None:  # on_epoch_end without on_train_begin
            self._inference_model = self._build_inference_model()
        result = evaluate(
            self.generator,
            self._inference_model,
            settings=self.settings,
            max_detections=self.max_detections,
            iou_threshold=self.iou_threshold,
            metric=self.metric,
            batch_size=self.batch_size,
            verbose=1 if self.verbose else 0,
        )
        self.result = result
        if logs is not None:
            logs["mAP"] = result.mean_average_precision
        if self.verbose >= 2:
            for c in result.classes:
                if c.num_annotations > 0:
                    print(
                        f"{c.num_annotations:6d} instances of class {c.name} with average "
                        f"precision {c.average_precision:.4f}"
                    )
        if self.verbose:
            print(
                f"Epoch {epoch + 1}: mAP {result.mean_average_precision:.4f} "
                f"({result.metric}, {result.num_images} images, "
                f"{result.inference_time * 1000:.0f} ms per image)"
            )
        if self.tensorboard_dir:
            self._write_tensorboard(epoch, result)

    def _write_tensorboard(self, epoch: int, result: EvaluationResult) -> None:
        if not self._tensorboard_checked:
            self._tensorboard_checked = True
            missing = [m for m in ("tensorflow", "tensorboard") if not importlib.util.find_spec(m)]
            if missing:
                print(
                    f"Evaluate: {' and '.join(missing)} not installed, so mAP is not written "
                    f"to TensorBoard ({self.tensorboard_dir}); it is still in the logs"
                )
            else:
                # TensorFlow only here: the package imports and runs on JAX without it
                import tensorflow as tf

                self._writer = tf.summary.create_file_writer(
                    os.path.join(self.tensorboard_dir, "evaluation")
                )
        if self._writer is None:
            return
        # TensorFlow only here: the package imports and runs on JAX without it
        import tensorflow as tf

        with self._writer.as_default():
            tf.summary.scalar("mAP", result.mean_average_precision, step=epoch)
            for c in result.classes:
                if c.num_annotations > 0:
                    tf.summary.scalar(f"AP/{c.name}", c.average_precision, step=epoch)
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._tensorboard_checked = False
