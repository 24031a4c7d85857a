"""Drawing boxes, captions, detections and annotations on images, in place.

Images are NumPy ``uint8`` arrays ``(H, W, 3)`` in BGR order (OpenCV's); boxes are
``(x1, y1, x2, y2)`` in absolute pixels (floats are rounded to the nearest pixel); colours
are BGR tuples of three ints in ``[0, 255]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import cv2
import numpy as np
from numpy.typing import ArrayLike

from keras_retinanet.model.settings import DetectionSettings, keep_scores
from keras_retinanet.visualization.colors import Color, _text_color, label_color

LabelToName = Callable[[int], str] | Mapping[int, str]

# 300 px to ~1500 px across without covering small objects.
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5
_FONT_THICKNESS = 1
_CAPTION_PAD = 2  # pixels of background around the caption text on every side

# Dash pattern for difficult boxes, in pixels along each edge; gaps stretch or shrink a little
# so that each edge starts and ends with a dash.
_DASH_ON = 6
_DASH_OFF = 4


def _check_image(image: np.ndarray, allow_float: bool = False) -> None:
    """Raises if OpenCV could not draw on ``image`` in place (``allow_float``: float32/64 too)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a NumPy array, got {type(image).__name__}.")
    dtypes = (np.uint8, np.float32, np.float64) if allow_float else (np.uint8,)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype not in dtypes:
        raise ValueError(
            f"image must be a uint8 array of shape (H, W, 3) in BGR order, got dtype "
            f"{image.dtype} and shape {image.shape}; undo any preprocessing (mean "
            "subtraction, scaling) and convert with np.clip(image, 0, 255).astype(np.uint8)."
        )
    # OpenCV draws in place on views whose pixels are packed within each row (a crop such as
    # image[10:50, 20:80] works) but rejects others (image[:, ::-1], image[..., ::-1]) with an
    # opaque "Layout of the output array" error; say what to do instead.
    item = image.itemsize
    rows_ok = image.strides[0] > 0 and image.strides[1] == 3 * item and image.strides[2] == item
    if not rows_ok or not image.flags.writeable:
        raise ValueError(
            f"image must be writeable with packed BGR pixels in each row to be drawn on in "
            f"place, got strides {image.strides}; pass np.ascontiguousarray(image) and keep "
            "the returned array."
        )


def _box_to_pixels(box: ArrayLike) -> tuple[int, int, int, int]:
    """Rounds an ``(x1, y1, x2, y2)`` box to integer pixel coordinates."""
    coords = np.asarray(box, dtype=np.float64).reshape(-1)
    if coords.shape[0] < 4:
        raise ValueError(f"box must hold (x1, y1, x2, y2), got {coords.shape[0]} values.")
    if not np.all(np.isfinite(coords[:4])):
        raise ValueError(f"box must be finite, got {coords[:4].tolist()}.")
    # Clamp to a range OpenCV's int32 maths accepts; the drawing is clipped to the image
    # anyway, so a box far outside it still draws the visible part.
    coords = np.clip(np.rint(coords[:4]), -(2**20), 2**20)
    x1, y1, x2, y2 = (int(v) for v in coords)
    return x1, y1, x2, y2


def _as_boxes(boxes: ArrayLike, name: str = "boxes") -> np.ndarray:
    """Converts ``boxes`` to a float ``(N, 4)`` array, explaining a batch dimension if any."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim == 3 and array.shape[0] == 1:
        raise ValueError(
            f"{name} has shape {array.shape}, which looks batched; pass {name}[0] to draw "
            "the detections of one image."
        )
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) as (x1, y1, x2, y2), got {array.shape}.")
    return array


def _label_name(label: int, label_to_name: LabelToName | None) -> str:
    """Looks up a class name; falls back to the label number when no name is known."""
    if label_to_name is None:
        return str(label)
    if isinstance(label_to_name, Mapping):
        return str(label_to_name.get(label, label))
    return str(label_to_name(label))


def draw_box(image: np.ndarray, box: ArrayLike, color: Color, thickness: int = 2) -> None:
    """Draws a box outline on an image in place.

    The outline is centred on the box edges: with ``thickness=2`` it covers the edge pixel and
    one pixel either side. Parts of the box outside the image are clipped.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)``, BGR; modified in place.
        box: 4 numbers ``(x1, y1, x2, y2)`` in absolute pixels (any extra values are ignored,
            so a row of ``[x1, y1, x2, y2, score]`` works).
        color: BGR colour of the outline.
        thickness: Line width in pixels.

    Raises:
        ValueError: If ``image`` is not a drawable ``uint8 (H, W, 3)`` array or ``box`` is not
            four finite numbers.
    """
    _check_image(image)
    x1, y1, x2, y2 = _box_to_pixels(box)
    # Axis-aligned lines gain nothing from anti-aliasing; LINE_8 keeps the outline crisp.
    cv2.rectangle(image, (x1, y1), (x2, y2), tuple(int(c) for c in color), thickness, cv2.LINE_8)


def _dash_spans(low: int, high: int) -> list[tuple[int, int]]:
    """Inclusive pixel spans of the dashes along an edge from ``low`` to ``high``.

    The dashes are spread so that the first starts at ``low`` and the last ends at ``high``:
    every corner of a dashed box is drawn, which keeps even a small box recognisable.
    """
    length = high - low + 1
    if length <= _DASH_ON:
        return [(low, high)]
    count = max(2, round((length + _DASH_OFF) / (_DASH_ON + _DASH_OFF)))
    step = (length - _DASH_ON) / (count - 1)
    return [(low + round(i * step), low + round(i * step) + _DASH_ON - 1) for i in range(count)]


def _draw_dashed_box(image: np.ndarray, box: ArrayLike, color: Color, thickness: int) -> None:
    """Draws a dashed box outline in place (used for difficult annotations)."""
    x1, y1, x2, y2 = _box_to_pixels(box)
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    color = tuple(int(c) for c in color)
    # Each dash is a filled rectangle rather than a cv2.line: thick lines get round caps that
    # spill into the gaps and, at thickness 2, close them. thickness // 2 pixels either side of
    # the edge matches cv2.rectangle's outline at the default thickness of 2.
    half = max(thickness, 1) // 2
    for start, stop in _dash_spans(x1, x2):
        for y in (y1, y2):
            cv2.rectangle(image, (start, y - half), (stop, y + half), color, cv2.FILLED)
    for start, stop in _dash_spans(y1, y2):
        for x in (x1, x2):
            cv2.rectangle(image, (x - half, start), (x + half, stop), color, cv2.FILLED)


def draw_caption(image: np.ndarray, box: ArrayLike, caption: str, color: Color = (0, 0, 0)) -> None:
    """Draws a caption at the top-left corner of a box, in place.

    The text sits on a filled rectangle of ``color`` with black or white text, whichever
    contrasts more, so it stays readable on any image. The caption goes just above the box;
    if that would leave the image (a box touching the top edge) it goes just inside the box
    instead, and it is shifted left or right as needed to stay within the image width, so the
    whole caption is visible whenever the image is at least as large as the caption.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)``, BGR; modified in place.
        box: ``(x1, y1, x2, y2)`` in absolute pixels; only ``x1`` and ``y1`` are used.
        caption: Text to draw. OpenCV's Hershey fonts only cover ASCII; other characters are
            drawn as ``?``.
        color: BGR colour of the caption background (usually the box colour). The default,
            black, keeps fizyr's three-argument call readable.

    A float32/float64 image (the network input, as in the README snippet that draws with
    ``cv2.rectangle`` and this function on the preprocessed image) is drawn on too, with the
    same 0..255 colour values.

    Raises:
        ValueError: If ``image`` is not a drawable ``(H, W, 3)`` uint8 or float array or
            ``box`` is not four finite numbers.
    """
    _check_image(image, allow_float=True)
    x1, y1, _, _ = _box_to_pixels(box)
    height, width = image.shape[:2]
    (text_w, text_h), baseline = cv2.getTextSize(caption, _FONT, _FONT_SCALE, _FONT_THICKNESS)
    label_w = text_w + 2 * _CAPTION_PAD
    label_h = text_h + baseline + 2 * _CAPTION_PAD

    # Top edge of the label: above the box if it fits, otherwise inside it; then clamp to the
    # image so that boxes partly outside the image still get a visible caption.
    top = y1 - label_h if y1 - label_h >= 0 else y1
    top = min(max(top, 0), max(height - label_h, 0))
    left = min(max(x1, 0), max(width - label_w, 0))

    if image.dtype == np.uint8:
        canvas, x0, y0 = image, left, top
    else:
        # OpenCV's putText draws on 8-bit images only: draw the label on a uint8 patch and
        # copy it into the float image.
        canvas, x0, y0 = np.zeros((label_h, label_w, 3), dtype=np.uint8), 0, 0
    cv2.rectangle(
        canvas,
        (x0, y0),
        (x0 + label_w - 1, y0 + label_h - 1),
        tuple(int(c) for c in color),
        cv2.FILLED,
    )
    origin = (x0 + _CAPTION_PAD, y0 + _CAPTION_PAD + text_h)  # putText anchors the baseline
    cv2.putText(
        canvas,
        caption,
        origin,
        _FONT,
        _FONT_SCALE,
        _text_color(color),
        _FONT_THICKNESS,
        cv2.LINE_AA,
    )
    if canvas is not image:
        bottom, right = min(top + label_h, height), min(left + label_w, width)
        image[top:bottom, left:right] = canvas[: bottom - top, : right - left]


def draw_boxes(image: np.ndarray, boxes: ArrayLike, color: Color, thickness: int = 2) -> None:
    """Draws several box outlines of one colour on an image, in place.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)``, BGR; modified in place.
        boxes: ``(N, 4)`` array of ``(x1, y1, x2, y2)`` boxes in absolute pixels; ``N`` may be 0.
        color: BGR colour of every outline.
        thickness: Line width in pixels.

    Raises:
        ValueError: If ``boxes`` is not ``(N, 4)`` or ``image`` cannot be drawn on in place.
    """
    _check_image(image)
    for box in _as_boxes(boxes):
        draw_box(image, box, color, thickness=thickness)


def draw_detections(
    image: np.ndarray,
    boxes: ArrayLike,
    scores: ArrayLike,
    labels: ArrayLike,
    label_to_name: LabelToName | None = None,
    score_threshold: float | None = None,
    color: Color | None = None,
) -> None:
    """Draws the detections of one image with a ``"name: score"`` caption each, in place.

    Detections are drawn when ``score > score_threshold``, the rule of every other consumer
    (:func:`keras_retinanet.model.settings.keep_scores`). Padding entries of
    ``FilterDetections`` (``label == -1`` or ``score < 0``) are never drawn, whatever the
    threshold. Outlines are drawn before captions, and both from the lowest to the highest
    score, so no outline crosses a caption and where captions overlap the most confident one
    is on top.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)``, BGR; modified in place.
        boxes: ``(D, 4)`` float array of ``(x1, y1, x2, y2)`` boxes in absolute pixels of
            ``image`` (undo any resize scale first).
        scores: ``(D,)`` float array of scores in ``[0, 1]``, or ``-1`` for padding.
        labels: ``(D,)`` int array of class indices, or ``-1`` for padding.
        label_to_name: Callable or mapping from class index to name; when ``None``, or when a
            mapping lacks the label, the caption shows the label number.
        score_threshold: draw detections scoring above this; None: the detection settings'
            ``display_threshold`` (0.5).
        color: BGR colour for every detection; ``None`` colours each by
            :func:`label_color`.

    Raises:
        ValueError: If the shapes are inconsistent (including a leading batch dimension: pass
            ``boxes[0], scores[0], labels[0]``) or ``image`` cannot be drawn on in place.
    """
    _check_image(image)
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if not (boxes.shape[0] == scores.shape[0] == labels.shape[0]):
        raise ValueError(
            f"boxes, scores and labels must describe the same detections, got "
            f"{boxes.shape[0]} boxes, {scores.shape[0]} scores and {labels.shape[0]} labels."
        )

    if score_threshold is None:
        score_threshold = DetectionSettings().display_threshold
    keep = keep_scores(scores, score_threshold) & (labels >= 0)
    order = np.flatnonzero(keep)[np.argsort(scores[keep], kind="stable")]
    colors = [label_color(int(labels[i])) if color is None else color for i in order]
    # All outlines first, then all captions, so that no outline crosses a caption's text.
    for index, box_color in zip(order, colors):
        draw_box(image, boxes[index], box_color)
    for index, box_color in zip(order, colors):
        caption = f"{_label_name(int(labels[index]), label_to_name)}: {scores[index]:.2f}"
        draw_caption(image, boxes[index], caption, color=box_color)


def draw_annotations(
    image: np.ndarray,
    annotations: Mapping[str, ArrayLike],
    label_to_name: LabelToName | None = None,
    color: Color | None = (0, 255, 0),
) -> None:
    """Draws ground-truth boxes with their class name, in place.

    Difficult boxes (PASCAL VOC's ``difficult`` flag) are drawn with a **dashed** outline and
    the caption ``"name (difficult)"``, so they stand apart from the solid outlines of boxes
    that count in evaluation. Entries with a negative label (padding) are skipped.

    Args:
        image: ``uint8`` array of shape ``(H, W, 3)``, BGR; modified in place.
        annotations: Mapping with ``"bboxes"``, an ``(M, 4)`` float array of ``(x1, y1, x2,
            y2)`` boxes in absolute pixels, ``"labels"``, an ``(M,)`` int array of class
            indices, and optionally ``"difficult"``, an ``(M,)`` bool array.
        label_to_name: Callable or mapping from class index to name; when ``None``, or when a
            mapping lacks the label, the caption shows the label number.
        color: BGR colour for every box; green by default so ground truth stands apart from
            detections drawn with :func:`label_color`. ``None`` colours each by
            :func:`label_color`.

    Raises:
        KeyError: If ``"bboxes"`` or ``"labels"`` is missing.
        ValueError: If the arrays disagree in length or ``image`` cannot be drawn on in place.
    """
    _check_image(image)
    for key in ("bboxes", "labels"):
        if key not in annotations:
            raise KeyError(
                f"annotations must have a {key!r} entry, got keys {sorted(annotations)}."
            )
    boxes = _as_boxes(annotations["bboxes"], name="annotations['bboxes']")
    labels = np.asarray(annotations["labels"]).reshape(-1)
    difficult = np.asarray(
        annotations.get("difficult", np.zeros(labels.shape[0], dtype=bool)), dtype=bool
    ).reshape(-1)
    if not (boxes.shape[0] == labels.shape[0] == difficult.shape[0]):
        raise ValueError(
            f"annotations must hold one entry per box, got {boxes.shape[0]} bboxes, "
            f"{labels.shape[0]} labels and {difficult.shape[0]} difficult flags."
        )

    captions = []
    # All outlines first, then all captions, so that no outline crosses a caption's text.
    for box, label, is_difficult in zip(boxes, labels, difficult):
        label = int(label)
        if label < 0:
            continue
        box_color = label_color(label) if color is None else color
        caption = _label_name(label, label_to_name)
        if is_difficult:
            _draw_dashed_box(image, box, box_color, thickness=2)
            caption += " (difficult)"
        else:
            draw_box(image, box, box_color)
        captions.append((box, caption, box_color))
    for box, caption, box_color in captions:
        draw_caption(image, box, caption, color=box_color)
