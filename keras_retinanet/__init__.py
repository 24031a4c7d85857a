"""RetinaNet object detection for Keras 3.

The public entry points are :func:`retinanet_model` (the training model),
:func:`retinanet_box` (the inference model with anchors, box decoding and NMS)
and :func:`load_model` (from :mod:`keras_retinanet.models`). The network's code is in
:mod:`keras_retinanet.model`; its modules' old paths (``keras_retinanet.layers``...) still import
(:mod:`keras_retinanet._compat`).

Importing the package registers every layer and loss its saved models use, so
``keras.saving.load_model("snapshot.keras")`` works after ``import keras_retinanet`` alone (as
after ``import keras_hub``). That imports Keras and its backend: about 4 s on a 2-core CPU with
TensorFlow, paid by every module of the package, NumPy-only ones included. On a machine
without a GPU, TensorFlow starts without its CUDA probing messages (:mod:`keras_retinanet.quiet`).
"""

from keras_retinanet.quiet import quiet_tensorflow_start

quiet_tensorflow_start()

from keras_retinanet import _compat  # noqa: E402

_compat.install()

from keras_retinanet.model import layers, losses  # noqa: E402, F401  (registers saved classes)

__version__ = "0.1.0"

__all__ = ["retinanet_model", "retinanet_box", "load_model", "__version__"]


def __getattr__(name):
    if name in ("retinanet_model", "retinanet_box", "load_model"):
        from keras_retinanet import models  # not at import: it builds on keras.applications

        return getattr(models, name)
    raise AttributeError(f"module 'keras_retinanet' has no attribute {name!r}")
