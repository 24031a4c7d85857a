"""Detection metrics and model evaluation.

* :mod:`~keras_retinanet.evaluation.voc`: Pascal VOC matching, 11-point and all-point AP.
* :mod:`~keras_retinanet.evaluation.coco`: COCO AP/AR through pycocotools.
* :mod:`~keras_retinanet.evaluation.runner`: :func:`evaluate` (a model over a generator) and
  its :class:`EvaluationResult`.
* :mod:`~keras_retinanet.evaluation.inputs`: the inference model of a training one, the
  class-count check, the validation generator a snapshot records.
* :mod:`~keras_retinanet.evaluation.reports`: the table, JSON report, precision/recall plots
  and annotated images of ``retinanet-evaluate``.
* :mod:`~keras_retinanet.evaluation.callback`: the :class:`Evaluate` Keras callback.

Names are imported lazily, so that using the NumPy metrics does not import Keras or
pycocotools.
"""

import importlib

_PUBLIC = {
    "average_precision": "voc",
    "precision_recall": "voc",
    "evaluate_detections": "voc",
    "mean_average_precision": "voc",
    "plot_precision_recall": "voc",
    "evaluate_coco": "coco",
    "evaluate": "runner",
    "EvaluationResult": "results",
    "ClassResult": "results",
    "format_table": "reports",
    "Evaluate": "callback",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(f"{__name__}.{_PUBLIC[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
