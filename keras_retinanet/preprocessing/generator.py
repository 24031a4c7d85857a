"""The batch generator shared by the VOC, CSV and COCO datasets.

A :class:`Generator` is a ``keras.utils.PyDataset``: ``model.fit(generator)`` runs its
``__getitem__`` in ``workers`` threads (or processes with ``use_multiprocessing=True``).
Each batch goes through

    load images -> clip / drop invalid boxes -> augment -> resize (min_side, max_side)
    -> subtract the ImageNet mean -> pad to a common size -> anchor targets

and comes out as ``(images, (regression_targets, classification_targets))``.

Subclasses hold the dataset index (:class:`~.dataset.DetectionDataset`), set ``self.classes``
(names by label), implement ``size``, ``image_path``, ``load_annotations`` and
``dataset_info``, then call ``super().__init__(**kwargs)``.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_retinanet.model.anchors import AnchorParameters, anchors_for_shape
from keras_retinanet.model.targets import anchor_targets_bbox
from keras_retinanet.model.variants import get_variant
from keras_retinanet.preprocessing.batching import accepts_keyword, accepts_seed, group_images
from keras_retinanet.preprocessing.dataset import DetectionDataset
from keras_retinanet.preprocessing.image import (
    ImageReadError,
    compute_resize_scale,
    pad_batch,
    pad_to_multiple,
    resize_image,
)
from keras_retinanet.preprocessing.transform import filter_boxes, seed_for

GROUP_METHODS = ("none", "random", "ratio")


class Generator(DetectionDataset, keras.utils.PyDataset):
    """Base class: the dataset index (:class:`DetectionDataset`), batching, augmentation,
    resizing, padding and anchor targets.

    Args:
        batch_size: images per batch.
        shuffle: shuffle the order of the batches, and which images share a batch, every epoch.
        group_method: how images are grouped into batches: ``"none"`` (dataset order),
            ``"random"`` or ``"ratio"`` (sorted by aspect ratio, so that the images of a batch
            have similar shapes and little of the padded batch is padding).
        image_min_side: resize so that the shorter side is this long...
        image_max_side: ...unless the longer side would exceed this. 800/1333 is the
            detectron2 / torchvision default.
        transform: augmentation applied to each image and its boxes before resizing, e.g.
            :func:`keras_retinanet.preprocessing.transform.random_transform`; None for none.
            A callable that accepts ``seed=`` gets one derived from ``(seed, epoch, index)``;
            one that accepts ``network_scale=``, the resize factor that follows it.
        anchor_parameters: anchors the targets are assigned to; ``AnchorParameters()`` if None.
            Must be the same as the model's.
        pad_multiple: the batch is zero-padded (after mean subtraction) up to the largest
            image, rounded up to a multiple of this (None: the variant's, 32 or fizyr's 1).
            32, C5's stride, lines up every level and FPN's maps, and leaves few input
            shapes, each of which costs a retrace of the model's ``tf.function``.
        seed: seeds shuffling, grouping and augmentation; None draws a random seed.
        skip_bad_images: skip an unreadable image with a warning (counted in
            :attr:`skipped_images`) instead of raising ``ImageReadError``. With
            ``use_multiprocessing`` the count stays in the worker processes.
        workers: worker threads or processes ``model.fit`` uses (``keras.utils.PyDataset``).
        use_multiprocessing: processes instead of threads (the generator pickles). Threads
            are usually the better choice: JPEG decoding (Pillow), resizing (OpenCV) and the
            NumPy target maths release the GIL, while a process has to pickle every batch
            back (about 16 MB per 800x1088 image: inputs and targets), which
            ``benchmarks/bench_loader.py --processes`` shows to cost more than it gains.
        max_queue_size: batches prepared ahead.
        full_batches: every batch has exactly ``batch_size`` images. The last, short group of
            an epoch is filled with the first images of that epoch's order, and with
            ``skip_bad_images`` a batch that lost an unreadable image repeats its readable
            ones. Multi-device training needs this: each device takes an equal share of every
            batch, and a short batch would leave a device with none.
        shard: ``(index, count)``: batch only the images whose index is ``index`` modulo
            ``count``, as worker ``index`` of ``count`` does in multi-machine training, so
            that the workers read disjoint parts of the dataset and together all of it.
            :meth:`size` and the per-image methods still cover the whole dataset.
        variant: the model variant the targets are for (its anchor rule and box coder);
            None: this package's own.
    """

    def __init__(
        self,
        *,
        batch_size: int = 1,
        shuffle: bool = True,
        group_method: str = "ratio",
        image_min_side: int = 800,
        image_max_side: int = 1333,
        transform: Any = None,
        anchor_parameters: AnchorParameters | None = None,
        pad_multiple: int | None = None,
        seed: int | None = None,
        skip_bad_images: bool = False,
        workers: int = 1,
        use_multiprocessing: bool = False,
        max_queue_size: int = 10,
        full_batches: bool = False,
        shard: tuple[int, int] | None = None,
        variant: Any = None,
    ) -> None:
        super().__init__(
            workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size
        )
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if group_method not in GROUP_METHODS:
            raise ValueError(f"group_method must be one of {GROUP_METHODS}, got {group_method!r}")
        if image_min_side <= 0 or image_max_side < image_min_side:
            raise ValueError(
                "need 0 < image_min_side <= image_max_side, got "
                f"{image_min_side} and {image_max_side}"
            )
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.group_method = group_method
        self.image_min_side = image_min_side
        self.image_max_side = image_max_side
        self.transform = transform
        self.anchor_parameters = anchor_parameters or AnchorParameters()
        self.variant = get_variant(variant)
        self.pad_multiple = int(pad_multiple or self.variant.pad_multiple)
        self.seed = seed
        self.skip_bad_images = bool(skip_bad_images)
        self.full_batches = bool(full_batches)
        if shard is not None:
            index, count = (int(v) for v in shard)
            if count < 1 or not 0 <= index < count:
                raise ValueError(
                    f"shard must be (index, count) with 0 <= index < count, got {shard}"
                )
            shard = (index, count)
        self.shard = shard

        self._base_seed = (
            int(seed) if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
        )
        self._epoch = 0
        self._other_groups: dict[int, list[np.ndarray]] = {}  # see epoch_groups
        self._lock = threading.Lock()
        self._bad_images: dict[int, str] = {}
        self._transform_takes_seed = accepts_seed(transform)
        self._transform_takes_scale = accepts_keyword(transform, "network_scale")
        self._index_dataset()
        if self.size() == 0:
            # Not an error: a CLI may build an optional validation set and check size().
            warnings.warn(
                f"{type(self).__name__} has no images: {self.dataset_info()}", stacklevel=3
            )
        if shard is not None and 0 < self.size() <= shard[0]:
            raise ValueError(
                f"{type(self).__name__} {self.dataset_info()} has {self.size()} images, too few "
                f"to give each of {shard[1]} workers one; use fewer workers or more images"
            )
        self.groups = group_images(self, 0)

    # Pickling, for use_multiprocessing with a spawn/forkserver start method.
    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def skipped_images(self) -> int:
        """Number of distinct unreadable images skipped so far (``skip_bad_images=True``)."""
        return len(self._bad_images)

    @property
    def bad_images(self) -> dict[int, str]:
        """Skipped images: index -> error message."""
        return dict(self._bad_images)

    def resize_image(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Resize to ``image_min_side`` / ``image_max_side``; returns ``(image, scale)``."""
        return resize_image(
            image,
            min_side=self.image_min_side,
            max_side=self.image_max_side,
            rule=self.variant.resize,
        )

    def filter_annotations(
        self, image: np.ndarray, annotations: dict[str, np.ndarray], image_index: int
    ) -> dict[str, np.ndarray]:
        """Clip boxes to the image and drop degenerate or outside boxes, with a warning.

        Boxes reaching more than a pixel past the border are clipped, also with a warning
        (often a sign that the annotation was made on a rotated or resized copy of the image).
        """
        height, width = image.shape[:2]
        kept, dropped, clipped = filter_boxes(annotations, height, width)
        if dropped.any() or clipped.any():
            bboxes = np.asarray(annotations["bboxes"]).reshape(-1, 4)
            parts = []
            if dropped.any():
                parts.append(
                    f"dropped {int(dropped.sum())} box(es) that are degenerate or outside the "
                    f"{width}x{height} image: {bboxes[dropped].tolist()}"
                )
            if clipped.any():
                parts.append(
                    f"clipped {int(clipped.sum())} box(es) reaching past the border: "
                    f"{bboxes[clipped].tolist()}"
                )
            warnings.warn(f"{self.image_path(image_index)}: {'; '.join(parts)}", stacklevel=2)
        return kept

    def preprocess_group(
        self, group: Sequence[int], epoch: int | None = None
    ) -> tuple[list[np.ndarray], list[dict[str, np.ndarray]], list[float]]:
        """Load, filter, augment and resize a group of images (no mean subtraction yet).

        Unreadable images are left out when ``skip_bad_images`` is set.

        Args:
            group: image indices.
            epoch: the data pass whose augmentation draws to use; None: the current one.

        Returns:
            ``(images, annotations, scales)``: ``(H, W, 3)`` uint8 BGR images after
            augmentation and resizing, their annotations in the resized pixels, and the resize
            scale of each (resized = augmented * scale).
        """
        images, annotations, scales, _ = self._preprocess_group(group, epoch)
        return images, annotations, scales

    def _preprocess_group(
        self, group: Sequence[int], epoch: int | None = None
    ) -> tuple[list, list, list, list]:
        epoch = self._epoch if epoch is None else int(epoch)
        images, annotations_group, scales, kept = [], [], [], []
        for image_index in group:
            image_index = int(image_index)
            image = self._load_image_or_skip(image_index)
            if image is None:
                continue
            annotations = self.load_annotations(image_index)
            annotations = self.filter_annotations(image, annotations, image_index)
            if self.transform is not None:
                options = {}
                if self._transform_takes_seed:
                    options["seed"] = seed_for(self._base_seed, epoch, image_index)
                if self._transform_takes_scale:  # boxes judged at the network's size
                    sides = {"min_side": self.image_min_side, "max_side": self.image_max_side}
                    options["network_scale"] = compute_resize_scale(image.shape, **sides)
                image, annotations = self.transform(image, annotations, **options)
            image, scale = self.resize_image(image)
            annotations = dict(annotations)
            annotations["bboxes"] = (
                np.asarray(annotations["bboxes"], dtype=np.float32).reshape(-1, 4) * scale
            )

            images.append(image)
            annotations_group.append(annotations)
            scales.append(scale)
            kept.append(image_index)
        return images, annotations_group, scales, kept

    def _load_image_or_skip(self, image_index: int) -> np.ndarray | None:
        if not self.skip_bad_images:
            return self.load_image(image_index)
        if image_index in self._bad_images:
            return None
        try:
            return self.load_image(image_index)
        except ImageReadError as e:
            with self._lock:
                first_time = image_index not in self._bad_images
                self._bad_images[image_index] = str(e)
            if first_time:
                warnings.warn(f"skipping image: {e}", stacklevel=3)
            return None

    # ---- batches -----------------------------------------------------------------------------

    def padded_shape(self, image_group: Sequence[Any]) -> tuple[int, int]:
        """``(H, W)`` of the batch: the largest image, rounded up to ``pad_multiple``."""
        height = max(int(image.shape[0]) for image in image_group)
        width = max(int(image.shape[1]) for image in image_group)
        m = self.pad_multiple
        return pad_to_multiple(height, m), pad_to_multiple(width, m)

    def compute_inputs(self, image_group: Sequence[np.ndarray]) -> np.ndarray:
        """Subtract the ImageNet mean and pad a group of (resized) BGR images into a batch
        (:func:`~keras_retinanet.preprocessing.image.pad_batch`, as at inference).

        Returns:
            ``(B, H, W, 3)`` float32, each image in the top-left corner and zeros (the mean
            colour) in the padding.
        """
        return pad_batch(image_group, self.pad_multiple, self.variant.pad_value())

    def compute_targets(
        self, image_group: Sequence[np.ndarray], annotations_group: Sequence[dict]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Anchor targets of a group, for the anchors of the padded batch shape.

        Difficult boxes are passed on with their flag: their anchors are ignored, neither
        positive nor negative (see :func:`keras_retinanet.model.targets.anchor_targets_bbox`).

        Returns:
            ``regression`` ``(B, N, 5)`` and ``classification`` ``(B, N, K + 1)`` float32, the
            last column of each the anchor state (-1 ignore, 0 negative, 1 positive).
        """
        anchors = anchors_for_shape(
            self.padded_shape(image_group), self.anchor_parameters, self.variant.anchor_rule
        )
        return anchor_targets_bbox(
            anchors,
            image_group,
            annotations_group,
            self.num_classes(),
            coder=self.variant.box_coder,
            matcher=self.variant.matcher,
        )

    def compute_input_output(
        self, group: Sequence[int], epoch: int | None = None
    ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
        """The batch of a group of image indices (augmented as in data pass ``epoch``, None:
        the current one), or None when no image of it is readable."""
        images, annotations, _, _ = self._preprocess_group(group, epoch)
        if not images:
            return None
        if self.full_batches and len(images) < self.batch_size:
            keep = [k % len(images) for k in range(self.batch_size)]
            images = [images[k] for k in keep]
            annotations = [annotations[k] for k in keep]
        inputs = self.compute_inputs(images)
        regression, classification = self.compute_targets(images, annotations)
        return inputs, (regression, classification)

    @property
    def base_seed(self) -> int:
        """The seed of the data order and augmentation (``seed``, or the one drawn for None):
        a resumed training passes it back to continue the same order."""
        return self._base_seed

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.groups)

    def __getitem__(self, index: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Batch ``index``: ``(images (B, H, W, 3), (regression (B, N, 5), classification
        (B, N, K + 1)))``, all float32.

        With ``skip_bad_images``, a batch whose images are all unreadable is replaced by the
        next batch with a readable image, so that ``model.fit`` always gets data.
        """
        return self.epoch_batch(self._epoch, index)

    def epoch_groups(self, epoch: int) -> list[np.ndarray]:
        """The batches (groups of image indices) of data pass ``epoch``, a function of the
        seed and ``epoch`` alone."""
        if epoch == self._epoch:
            return self.groups
        with self._lock:
            if epoch in self._other_groups:
                return self._other_groups[epoch]
        groups = group_images(self, epoch)
        with self._lock:  # two passes are in use at most: the one ending and the next
            self._other_groups = {e: g for e, g in self._other_groups.items() if e >= epoch - 1}
            self._other_groups[epoch] = groups
        return groups

    def epoch_batch(self, epoch: int, index: int) -> tuple[np.ndarray, tuple]:
        """Batch ``index`` of data pass ``epoch``, whatever pass the generator is on.

        The ``tf.data`` input of training asks for batches by ``(pass, index)``, so a batch
        loaded ahead across the end of a pass already comes from the next one (the next
        order and augmentation draws), not from a repeat of the pass that ends.
        """
        groups = self.epoch_groups(epoch)
        if not 0 <= index < len(groups):
            raise IndexError(f"batch index {index} out of range [0, {len(groups)})")
        for offset in range(len(groups)):
            batch = self.compute_input_output(groups[(index + offset) % len(groups)], epoch)
            if batch is not None:
                return batch
        raise ImageReadError(f"no image of the dataset can be read: {self.dataset_info()}")

    def on_epoch_end(self) -> None:
        """Advance the epoch (new augmentation draws) and reshuffle the batches."""
        if self.shuffle or self.group_method == "random":
            self.groups = self.epoch_groups(self._epoch + 1)
        self._epoch += 1
