"""Drawing detections and annotations on images, and plotting training curves.

* :mod:`~keras_retinanet.visualization.colors`: :func:`label_color`, :data:`PADDING_COLOR`.
* :mod:`~keras_retinanet.visualization.draw`: ``draw_box``, ``draw_boxes``, ``draw_caption``,
  ``draw_detections``, ``draw_annotations``.
* :mod:`~keras_retinanet.visualization.plots`: ``plot_training_log``, ``plot_focal_loss``.

Conventions used throughout:

* Images are NumPy ``uint8`` arrays of shape ``(H, W, 3)`` in BGR channel order (OpenCV's),
  and every ``draw_*`` function draws on the image **in place** and returns ``None``.
* Boxes are ``(x1, y1, x2, y2)`` in absolute pixel coordinates (floats are rounded to the
  nearest pixel).
* Colours are BGR tuples of three ints in ``[0, 255]``.

Only NumPy and OpenCV are imported with this package; matplotlib is imported inside the two
plotting functions.
"""

from keras_retinanet.visualization.colors import PADDING_COLOR, label_color
from keras_retinanet.visualization.draw import (
    draw_annotations,
    draw_box,
    draw_boxes,
    draw_caption,
    draw_detections,
)
from keras_retinanet.visualization.plots import plot_focal_loss, plot_training_log

__all__ = [
    "PADDING_COLOR",
    "draw_annotations",
    "draw_box",
    "draw_boxes",
    "draw_caption",
    "draw_detections",
    "label_color",
    "plot_focal_loss",
    "plot_training_log",
]
