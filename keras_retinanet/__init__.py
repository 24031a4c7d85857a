"""RetinaNet object detection for Keras 3.

The public entry points are :func:`retinanet_model` (the training model),
:func:`retinanet_box` (the inference model with anchors, box decoding and NMS)
and :func:`load_model`. They are imported lazily so that light modules
(evaluation maths, drawing) do not pay for importing a Keras backend.
"""

__version__ = "0.1.0"

__all__ = ["retinanet_model", "retinanet_box", "load_model", "__version__"]


def __getattr__(name):
    if name in ("retinanet_model", "retinanet_box", "load_model"):
        from keras_retinanet import models

        return getattr(models, name)
    raise AttributeError(f"module 'keras_retinanet' has no attribute {name!r}")
