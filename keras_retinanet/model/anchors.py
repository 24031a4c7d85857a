"""Anchor generation: the grid of anchors over the pyramid levels.

There is exactly one implementation of the anchor grid: :func:`generate_anchors` for the base
anchors of a level and :func:`shift` for tiling them over a feature map. :func:`shift` takes
an ``xp`` argument (``numpy`` or ``keras.ops``), so the NumPy data loader
(:func:`anchors_for_shape`) and the inference graph's ``Anchors`` layer compute the same numbers
from the same code; ``tests/test_anchors.py`` checks that they agree.

The targets a loader assigns to these anchors: :mod:`keras_retinanet.model.targets`.

Anchor order, which the model's outputs follow: level by level (P3 first), then location by
location in row-major order (x fastest), then anchor by anchor (ratio-major, scale-minor).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

# Anchor states in the last column of the targets (keras_retinanet.model.targets).
IGNORE = -1
NEGATIVE = 0
POSITIVE = 1


@dataclasses.dataclass(frozen=True)
class AnchorParameters:
    """Sizes, strides, aspect ratios and scales of the anchors, one size and stride per level.

    The defaults are those of Lin et al. 2017 (sec. 4): areas 32^2..512^2 on P3..P7, three
    aspect ratios and three octave scales, so A = 9 anchors per location.

    Attributes:
        sizes: base anchor side per level, in pixels.
        strides: feature-map stride per level; the pyramid level is ``log2(stride)``.
        ratios: aspect ratios ``h / w``.
        scales: multipliers of the base size.
    """

    sizes: tuple[float, ...] = (32, 64, 128, 256, 512)
    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    scales: tuple[float, ...] = (2**0, 2 ** (1.0 / 3.0), 2 ** (2.0 / 3.0))

    def __post_init__(self) -> None:
        # Stored as tuples of Python numbers so the parameters are hashable (cache keys) and
        # serialise to JSON unchanged.
        object.__setattr__(self, "sizes", tuple(float(s) for s in self.sizes))
        object.__setattr__(self, "strides", tuple(int(s) for s in self.strides))
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if len(self.sizes) != len(self.strides):
            raise ValueError(
                f"anchor sizes and strides need one entry per level, got {len(self.sizes)} "
                f"sizes and {len(self.strides)} strides"
            )
        for stride in self.strides:
            if stride <= 0 or stride & (stride - 1):
                raise ValueError(f"anchor strides must be powers of two, got {stride}")
        if not self.ratios or not self.scales:
            raise ValueError("anchor ratios and scales must not be empty")

    @property
    def num_anchors(self) -> int:
        """Anchors per location (A)."""
        return len(self.ratios) * len(self.scales)

    @property
    def pyramid_levels(self) -> tuple[int, ...]:
        """Pyramid level of each stride, ``log2(stride)`` (3..7 for the defaults)."""
        return tuple(int(math.log2(s)) for s in self.strides)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain-Python form, for JSON snapshots and layer configs."""
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, config: dict[str, Sequence[float]]) -> AnchorParameters:
        """Inverse of :meth:`to_dict`; missing keys take the defaults."""
        unknown = set(config) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(
                f"unknown anchor parameter(s) {sorted(unknown)}; "
                "expected sizes, strides, ratios, scales"
            )
        values = {}
        for key, value in config.items():
            if not isinstance(value, list | tuple) or not value:
                raise ValueError(f"{key} must be a non-empty list of numbers, got {value!r}")
            numbers = []
            for v in value:
                if (
                    isinstance(v, bool)
                    or not isinstance(v, int | float)
                    or not (math.isfinite(v) and v > 0)
                ):
                    raise ValueError(f"{key} must hold positive numbers, got {v!r}")
                numbers.append(v)
            values[key] = tuple(numbers)
        parameters = cls(**values)
        if len(parameters.sizes) != len(parameters.strides):
            raise ValueError(
                f"sizes and strides need one value per pyramid level each, got "
                f"{len(parameters.sizes)} sizes and {len(parameters.strides)} strides"
            )
        return parameters


def generate_anchors(
    base_size: float = 16,
    ratios: Sequence[float] = AnchorParameters.ratios,
    scales: Sequence[float] = AnchorParameters.scales,
) -> np.ndarray:
    """Base anchors of one level, centred on the origin.

    Each anchor has area ``(base_size * scale)^2`` and aspect ratio ``h / w == ratio``.

    Args:
        base_size: anchor side at scale 1 and ratio 1, in pixels.
        ratios: aspect ratios ``h / w``.
        scales: multipliers of ``base_size``.

    Returns:
        ``(len(ratios) * len(scales), 4)`` float32 ``(x1, y1, x2, y2)`` anchors, ordered
        ratio-major, scale-minor.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    scales = np.asarray(scales, dtype=np.float64)
    areas = (base_size * np.tile(scales, len(ratios))) ** 2
    ratio_per_anchor = np.repeat(ratios, len(scales))
    widths = np.sqrt(areas / ratio_per_anchor)
    heights = widths * ratio_per_anchor
    return np.stack([-widths / 2, -heights / 2, widths / 2, heights / 2], axis=1).astype(np.float32)


def shift(shape: Any, stride: Any, anchors: Any, xp: Any = np, offset: float = 0.5) -> Any:
    """Tile base anchors over a feature map.

    The anchors of cell ``(i, j)`` are centred at ``((j + offset) * stride_x, (i + offset) *
    stride_y)``: ``offset`` 0.5 centres them on the cell (fizyr, this package), 0 on its corner
    (torchvision).

    Args:
        shape: ``(height, width)`` of the feature map (ints or scalar tensors).
        stride: feature-map stride in pixels, or ``(stride_y, stride_x)``.
        anchors: ``(A, 4)`` base anchors from :func:`generate_anchors`.
        xp: ``numpy`` or ``keras.ops``.
        offset: where in the cell the anchors are centred, in strides.

    Returns:
        ``(height * width * A, 4)`` float32 anchors, x fastest, then y, anchor index innermost.
    """
    height, width = shape[0], shape[1]
    stride_y, stride_x = stride if isinstance(stride, (tuple, list)) else (stride, stride)
    if xp is np:
        shift_x = (np.arange(width, dtype=np.float32) + offset) * np.float32(stride_x)
        shift_y = (np.arange(height, dtype=np.float32) + offset) * np.float32(stride_y)
        base = np.asarray(anchors, dtype=np.float32)
    else:
        stride_x = xp.cast(stride_x, "float32")
        stride_y = xp.cast(stride_y, "float32")
        shift_x = (xp.cast(xp.arange(width), "float32") + offset) * stride_x
        shift_y = (xp.cast(xp.arange(height), "float32") + offset) * stride_y
        base = xp.convert_to_tensor(anchors, dtype="float32")
    shift_x, shift_y = xp.meshgrid(shift_x, shift_y)  # (height, width), x fastest
    shift_x = xp.reshape(shift_x, (-1,))
    shift_y = xp.reshape(shift_y, (-1,))
    shifts = xp.stack([shift_x, shift_y, shift_x, shift_y], axis=1)  # (H*W, 4)
    all_anchors = xp.reshape(shifts, (-1, 1, 4)) + xp.reshape(base, (1, -1, 4))
    return xp.reshape(all_anchors, (-1, 4))


def torchvision_base_anchors(
    base_size: float, ratios: Sequence[float], scales: Sequence[float]
) -> np.ndarray:
    """Base anchors by torchvision's ``AnchorGenerator`` rule, in its float32 arithmetic.

    The sizes are ``int(base_size * scale)`` (32, 40, 50 on P3: torchvision truncates), an
    anchor of ratio ``r`` is ``size / sqrt(r)`` wide and ``size * sqrt(r)`` high, and the
    corners ``(-w/2, -h/2, w/2, h/2)`` are rounded half to even, as ``torch.round``.

    Returns:
        ``(len(ratios) * len(scales), 4)`` float32 anchors, ratio-major, scale-minor (the
        order of :func:`generate_anchors`).
    """
    sizes = np.asarray([int(base_size * s) for s in scales], dtype=np.float32)
    h_ratios = np.sqrt(np.asarray(ratios, dtype=np.float32))
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)).astype(np.float32)


def base_anchors(
    base_size: float, ratios: Sequence[float], scales: Sequence[float], rule: str = "centred"
) -> np.ndarray:
    """The base anchors of one level by a variant's anchor rule (``"centred"``:
    :func:`generate_anchors`; ``"torchvision"``: :func:`torchvision_base_anchors`)."""
    if rule == "torchvision":
        return torchvision_base_anchors(base_size, ratios, scales)
    return generate_anchors(base_size, ratios, scales)


def level_strides(
    image_shape: Sequence[Any], feature_shape_: Sequence[Any], stride: int, rule: str
) -> Any:
    """The ``(stride_y, stride_x)`` a level's anchors step by: its nominal stride, or under
    torchvision's rule ``input_size // feature_size`` per axis (61 rather than 64 for P6 of
    an 800-pixel side, whose P6 has 13 cells)."""
    if rule == "torchvision":
        return (image_shape[0] // feature_shape_[0], image_shape[1] // feature_shape_[1])
    return (stride, stride)


def feature_shape(image_shape: Sequence[int], stride: int) -> tuple[int, int]:
    """Feature-map size of a pyramid level for an image size.

    ResNet halves with "same"-style rounding up at every stride-2 step (and P6/P7 use padding
    "same"), so the map of stride ``s`` is ``ceil(H / s) x ceil(W / s)``.
    """
    return (-(-int(image_shape[0]) // stride), -(-int(image_shape[1]) // stride))


def anchors_for_shape(
    image_shape: Sequence[int],
    anchor_parameters: AnchorParameters | None = None,
    rule: str = "centred",
) -> np.ndarray:
    """All anchors for an (padded) input image size, over every pyramid level.

    Args:
        image_shape: ``(H, W)`` or ``(H, W, C)`` of the network input.
        anchor_parameters: defaults to ``AnchorParameters()``.
        rule: the model variant's anchor rule (``"centred"`` or ``"torchvision"``, see
            :class:`keras_retinanet.model.variants.ModelVariant`).

    Returns:
        ``(N, 4)`` float32 ``(x1, y1, x2, y2)`` anchors in the order of the model's outputs.
    """
    anchor_parameters = anchor_parameters or AnchorParameters()
    shape = (int(image_shape[0]), int(image_shape[1]))
    return _anchors_for_shape(shape, anchor_parameters, rule).copy()


@functools.lru_cache(maxsize=64)
def _anchors_for_shape(
    image_shape: tuple[int, int], params: AnchorParameters, rule: str
) -> np.ndarray:
    # Cached: a loader sees few distinct padded sizes, and the grid is pure arithmetic.
    levels = []
    offset = 0.0 if rule == "torchvision" else 0.5
    for size, stride in zip(params.sizes, params.strides):
        base = base_anchors(size, params.ratios, params.scales, rule)
        grid = feature_shape(image_shape, stride)
        strides = level_strides(image_shape, grid, stride, rule)
        levels.append(shift(grid, strides, base, offset=offset))
    return np.concatenate(levels, axis=0).astype(np.float32)


def num_anchors_for_shape(
    image_shape: Sequence[int], anchor_parameters: AnchorParameters | None = None
) -> int:
    """Number of anchors N for an input image size (``sum_l ceil(H/s_l) * ceil(W/s_l) * A``)."""
    params = anchor_parameters or AnchorParameters()
    return sum(
        int(np.prod(feature_shape(image_shape, stride))) * params.num_anchors
        for stride in params.strides
    )


def __getattr__(name: str) -> Any:
    # anchor_targets_bbox lived here before model/targets.py; its old path still imports.
    if name == "anchor_targets_bbox":
        from keras_retinanet.model.targets import anchor_targets_bbox  # here: targets imports us

        return anchor_targets_bbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
