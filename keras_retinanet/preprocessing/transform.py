"""Operations on an image and its boxes together: filtering, clipping and random augmentation.

Annotations travel as a dict of per-box arrays, ``{"bboxes": (M, 4) float32 (x1, y1, x2, y2),
"labels": (M,) int64, "difficult": (M,) bool}``, boxes in the image's 0-based pixels. Every
function here keeps the arrays aligned: a box that is dropped takes its label, its difficult
flag and any other per-box array with it.

The random augmentation (:func:`random_transform`) is built on albumentations, which moves the
boxes with the image for every geometric op, rather than on hand-written affine maths.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from keras_retinanet.preprocessing.image import CAFFE_MEAN_BGR

# A transform as the generators use it: (BGR uint8 image, annotations) -> the same, augmented.
Transform = Callable[[np.ndarray, dict], tuple[np.ndarray, dict]]

# A box the augmentation cut at the image border to a sliver narrower or lower than this many
# network pixels (after the resize), and to less than half its side, is dropped: it carries no
# signal and would give extreme regression targets (see kept_after_augmentation).
MIN_NETWORK_SIDE = 1.0


def kept_after_augmentation(sides_before: np.ndarray, sides_after: np.ndarray) -> np.ndarray:
    """Which augmented boxes to keep, judged in network pixels (as the network sees them).

    A box is dropped when the augmentation left it with no area, or cut a side to under
    :data:`MIN_NETWORK_SIDE` *and* to under half of what it was: a sliver at the border. A box
    that was small to begin with is kept as small as the zoom makes it (a 1-px box zoomed by
    0.95 stays, as it would without augmentation): its size is the annotation's, not a cut.

    Args:
        sides_before: ``(M, 2)`` width and height of each box before augmentation, in network
            pixels.
        sides_after: ``(M, 2)`` the same boxes after it.

    Returns:
        ``(M,)`` bool.
    """
    sides_before = np.asarray(sides_before, dtype=np.float64).reshape(-1, 2)
    sides_after = np.asarray(sides_after, dtype=np.float64).reshape(-1, 2)
    enough = sides_after >= np.minimum(MIN_NETWORK_SIDE, 0.5 * sides_before)
    return (sides_after > 0).all(axis=1) & enough.all(axis=1)


def select_boxes(annotations: dict[str, Any], keep: np.ndarray) -> dict[str, np.ndarray]:
    """Keep a subset of the boxes, and of every per-box array with them.

    Args:
        annotations: dict of per-box arrays, all of length M (``"bboxes"`` is ``(M, 4)``).
        keep: ``(M,)`` bool mask or integer indices.

    Returns:
        A new dict with the same keys; the input is not modified.
    """
    return {key: np.asarray(value)[keep] for key, value in annotations.items()}


def filter_boxes(
    annotations: dict[str, Any], height: int, width: int, tolerance: float = 1.0
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Clip boxes to the image and drop those with no area left.

    A box is dropped when it is degenerate (``x2 <= x1`` or ``y2 <= y1``) or, once clipped to
    ``[0, width] x [0, height]``, has no area left, i.e. it lies outside the image.

    Args:
        annotations: dict of per-box arrays; ``"bboxes"`` is ``(M, 4)`` ``(x1, y1, x2, y2)``.
        height: image height in pixels.
        width: image width in pixels.
        tolerance: how far (pixels) a box may reach past the border before it counts as
            clipped in the returned mask. One pixel of overshoot is routine (a 1-based tool
            writing ``x2 = width + 1``) and not worth a warning.

    Returns:
        ``(annotations, dropped, clipped)``: the kept boxes (clipped), a ``(M,)`` bool mask of
        the dropped boxes and a ``(M,)`` bool mask of kept boxes that reached more than
        ``tolerance`` past the border.
    """
    bboxes = np.asarray(annotations["bboxes"], dtype=np.float32).reshape(-1, 4)
    clipped_boxes = np.empty_like(bboxes)
    np.clip(bboxes[:, 0::2], 0, width, out=clipped_boxes[:, 0::2])
    np.clip(bboxes[:, 1::2], 0, height, out=clipped_boxes[:, 1::2])
    degenerate = (bboxes[:, 2] <= bboxes[:, 0]) | (bboxes[:, 3] <= bboxes[:, 1])
    no_area = (clipped_boxes[:, 2] <= clipped_boxes[:, 0]) | (
        clipped_boxes[:, 3] <= clipped_boxes[:, 1]
    )
    dropped = degenerate | no_area
    overshoot = (
        (bboxes[:, 0] < -tolerance)
        | (bboxes[:, 1] < -tolerance)
        | (bboxes[:, 2] > width + tolerance)
        | (bboxes[:, 3] > height + tolerance)
    )
    result = dict(annotations, bboxes=clipped_boxes)
    return select_boxes(result, ~dropped), dropped, overshoot & ~dropped


def flip_boxes_horizontally(bboxes: np.ndarray, width: float) -> np.ndarray:
    """Mirror ``(M, 4)`` ``(x1, y1, x2, y2)`` boxes in an image of ``width`` pixels.

    Pixel column ``c`` moves to ``width - 1 - c``, so the half-open box ``[x1, x2)`` becomes
    ``[width - x2, width - x1)``. Mirroring twice gives the boxes back.
    """
    bboxes = np.asarray(bboxes, dtype=np.float32).reshape(-1, 4)
    return np.stack(
        [width - bboxes[:, 2], bboxes[:, 1], width - bboxes[:, 0], bboxes[:, 3]], axis=1
    ).astype(np.float32)


def seed_for(*keys: int) -> int:
    """A 32-bit seed derived from integers, e.g. ``(generator seed, epoch, image index)``.

    Distinct key tuples give independent streams (``numpy.random.SeedSequence``), so the
    augmentation of an image does not depend on which worker thread or process draws it.
    """
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


class RandomTransform:
    """Random horizontal flip, scale/translate and colour jitter of a BGR image and its boxes.

    Built on albumentations (``HorizontalFlip``, ``Affine``, ``ColorJitter``). Boxes follow the
    geometric ops, are clipped to the image, and boxes left with less than ``min_visibility``
    of their area, or cut to slivers (:func:`kept_after_augmentation`, in network pixels), are
    dropped together with their labels and difficult flags. :func:`random_transform` builds one.

    Determinism: ``transform(image, annotations, seed=s)`` gives the same output for the same
    ``s`` whatever ran before; the generators pass a seed derived from ``(seed, epoch, image
    index)``. Without ``seed=`` the transform draws from its own generator, seeded by the
    constructor's ``seed``, which is reproducible in a single thread only.

    Safe to call from several threads (each thread holds its own albumentations pipeline) and
    to pickle (for ``use_multiprocessing``).
    """

    def __init__(
        self,
        flip_prob: float = 0.5,
        scale: tuple[float, float] | None = (0.9, 1.1),
        translate: float = 0.1,
        color_jitter: bool = True,
        min_visibility: float = 0.0,
        seed: int | None = None,
    ) -> None:
        if not 0.0 <= flip_prob <= 1.0:
            raise ValueError(f"flip_prob must be in [0, 1], got {flip_prob}")
        if scale is not None and not (0 < scale[0] <= scale[1]):
            raise ValueError(f"scale must be a range (low, high) with 0 < low <= high, got {scale}")
        if not 0.0 <= translate < 1.0:
            raise ValueError(
                f"translate must be a fraction of the image size in [0, 1), got {translate}"
            )
        self.flip_prob = float(flip_prob)
        self.scale = None if scale is None else (float(scale[0]), float(scale[1]))
        self.translate = float(translate)
        self.color_jitter = bool(color_jitter)
        self.min_visibility = float(min_visibility)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._local = threading.local()

    def __repr__(self) -> str:
        return (
            f"RandomTransform(flip_prob={self.flip_prob}, scale={self.scale}, "
            f"translate={self.translate}, color_jitter={self.color_jitter}, "
            f"min_visibility={self.min_visibility}, seed={self.seed})"
        )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]  # per-thread pipelines are rebuilt where they are used
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _pipeline(self) -> Any:
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:
            pipeline = self._local.pipeline = self._build_pipeline()
        return pipeline

    def _build_pipeline(self) -> Any:
        # Training should not reach for the network: albumentations checks PyPI on import
        # unless told not to. A value the user set is left alone.
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        # optional: only --augment albumentations needs it
        import albumentations as A

        ops = []
        if self.flip_prob > 0:
            ops.append(A.HorizontalFlip(p=self.flip_prob))
        if (self.scale is not None and self.scale != (1.0, 1.0)) or self.translate > 0:
            ops.append(
                A.Affine(
                    scale=self.scale or (1.0, 1.0),
                    translate_percent=(-self.translate, self.translate),
                    keep_ratio=True,
                    border_mode=cv2.BORDER_CONSTANT,
                    # The ImageNet mean, in the RGB order the pipeline runs in: after mean
                    # subtraction the uncovered border is 0, like the batch padding.
                    fill=tuple(float(v) for v in CAFFE_MEAN_BGR[::-1]),
                    p=1.0,
                )
            )
        if self.color_jitter:
            # Mild ranges: strong hue shifts change what some classes look like.
            ops.append(A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5))
        if not any(isinstance(op, (A.HorizontalFlip, A.Affine)) for op in ops):
            return A.Compose(ops)  # the boxes do not move
        return A.Compose(
            ops,
            bbox_params=A.BboxParams(
                format="pascal_voc",  # absolute (x1, y1, x2, y2), the package's box format
                label_fields=["box_indices"],
                min_visibility=self.min_visibility,
                clip=True,
                filter_invalid_bboxes=True,
            ),
        )

    def __call__(
        self,
        image: np.ndarray,
        annotations: dict[str, Any],
        seed: int | None = None,
        network_scale: Any = 1.0,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Augment an image and its boxes.

        Args:
            image: ``(H, W, 3)`` uint8 BGR image.
            annotations: dict of per-box arrays with ``"bboxes"`` ``(M, 4)`` ``(x1, y1, x2, y2)``
                in the image's pixels.
            seed: makes this call deterministic; drawn from the transform's own generator
                when None.
            network_scale: the resize factor from this image to the network's input (the
                generators pass it): boxes are kept or dropped by their size there
                (:func:`kept_after_augmentation`). A number, or ``(s_x, s_y)``.

        Returns:
            ``(image, annotations)``: the augmented ``(H, W, 3)`` uint8 BGR image (same size)
            and the surviving boxes with their per-box arrays. The inputs are not modified.
        """
        if seed is None:
            seed = int(self._rng.integers(0, 2**32))
        pipeline = self._pipeline()
        # One independent stream per op: albumentations' own set_random_seed gives every op
        # the same seed, which would make "flip" and "jitter" decisions identical.
        seeds = np.random.SeedSequence(seed).generate_state(len(pipeline.transforms) + 1)
        pipeline.set_random_seed(int(seeds[0]))
        for op, op_seed in zip(pipeline.transforms, seeds[1:]):
            op.set_random_seed(int(op_seed))

        height, width = image.shape[:2]
        annotations, _, _ = filter_boxes(annotations, height, width, tolerance=np.inf)
        if not pipeline.transforms:
            return image.copy(), annotations
        rgb = np.ascontiguousarray(image[:, :, ::-1])  # ColorJitter's hue and saturation want RGB
        if "bboxes" not in pipeline.processors:
            return np.ascontiguousarray(pipeline(image=rgb)["image"][:, :, ::-1]), annotations
        bboxes = annotations["bboxes"]
        result = pipeline(image=rgb, bboxes=bboxes, box_indices=np.arange(len(bboxes)))
        out_image = np.ascontiguousarray(result["image"][:, :, ::-1])
        out_boxes = np.asarray(result["bboxes"], dtype=np.float32).reshape(-1, 4)
        indices = np.asarray(result["box_indices"], dtype=np.int64).reshape(-1)
        out = select_boxes(annotations, indices)
        out["bboxes"] = out_boxes
        scale = np.broadcast_to(np.asarray(network_scale, dtype=np.float64).reshape(-1)[:2], (2,))
        before = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)[indices]
        keep = kept_after_augmentation(
            (before[:, 2:] - before[:, :2]) * scale, (out_boxes[:, 2:] - out_boxes[:, :2]) * scale
        )
        return out_image, select_boxes(out, keep)


def random_transform(
    flip_prob: float = 0.5,
    scale: tuple[float, float] | None = (0.9, 1.1),
    translate: float = 0.1,
    color_jitter: bool = True,
    min_visibility: float = 0.0,
    seed: int | None = None,
) -> RandomTransform:
    """A random augmentation for the generators' ``transform=`` option.

    Args:
        flip_prob: probability of a horizontal flip (0 disables it).
        scale: range of the random zoom factor, sampled uniformly; None or ``(1, 1)``
            disables scaling. ``(0.9, 1.1)`` is a mild zoom that keeps objects at the sizes
            the anchors were chosen for.
        translate: largest shift as a fraction of the image width / height, per axis.
        color_jitter: random brightness, contrast, saturation (each +-20%) and a small hue
            shift, on half of the images.
        min_visibility: boxes keeping less than this fraction of their area inside the image
            after scale/translate are dropped; 0 keeps every box but the slivers of
            :func:`kept_after_augmentation`.
        seed: seed of the transform's own generator, used when it is called without ``seed=``.

    Returns:
        A callable ``(image_bgr, annotations, seed=None) -> (image_bgr, annotations)``; see
        :class:`RandomTransform`.
    """
    return RandomTransform(
        flip_prob=flip_prob,
        scale=scale,
        translate=translate,
        color_jitter=color_jitter,
        min_visibility=min_visibility,
        seed=seed,
    )
