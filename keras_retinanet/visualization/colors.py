"""Class colours: a fixed BGR colour per label, grey for padding, and a readable text colour."""

from __future__ import annotations

Color = tuple[int, int, int]

# 80 BGR colours, one per COCO class index. They were picked greedily from a 9x9x9 RGB grid
# (channel levels 0, 32, ..., 255), keeping colours of CIELAB lightness 30..85 (visible on both
# white and black backgrounds) and chroma >= 30 (no greys), each new colour being the candidate
# farthest in CIELAB from the colours already picked and from four reserved ones: the
# ground-truth green of draw_annotations, PADDING_COLOR, white and black. Greedy farthest-point
# order puts the most distinct colours first, so labels 0..19 are >= 37 Delta-E apart, any
# two labels >= 17 and any label >= 23 from the ground-truth green.
_PALETTE: tuple[Color, ...] = (
    (255, 0, 0), (0, 0, 255), (191, 64, 255), (0, 191, 223), (255, 128, 0),
    (159, 223, 0), (128, 128, 255), (0, 96, 32), (255, 191, 0), (128, 64, 128),
    (191, 32, 128), (0, 64, 128), (255, 191, 255), (128, 223, 191), (0, 223, 159),
    (255, 0, 255), (0, 128, 255), (128, 191, 255), (159, 96, 0), (64, 0, 159),
    (191, 191, 0), (0, 159, 0), (255, 128, 223), (96, 0, 255), (0, 128, 128),
    (0, 0, 159), (96, 128, 64), (64, 64, 128), (0, 128, 191), (191, 128, 255),
    (159, 64, 64), (64, 96, 255), (255, 32, 159), (223, 159, 159), (128, 0, 159),
    (255, 96, 64), (159, 128, 0), (96, 159, 159), (96, 128, 191), (96, 223, 128),
    (64, 223, 0), (32, 96, 96), (96, 159, 32), (255, 159, 0), (223, 64, 223),
    (128, 96, 191), (128, 32, 223), (191, 128, 191), (255, 64, 0), (64, 64, 191),
    (191, 223, 128), (255, 223, 64), (64, 128, 223), (64, 191, 191), (223, 96, 128),
    (64, 159, 96), (223, 128, 159), (96, 191, 0), (0, 96, 128), (128, 191, 128),
    (64, 159, 191), (191, 96, 191), (32, 0, 223), (255, 96, 191), (128, 128, 0),
    (191, 64, 0), (255, 159, 255), (0, 159, 128), (96, 64, 128), (191, 159, 255),
    (128, 159, 255), (96, 0, 159), (128, 64, 64), (223, 0, 191), (64, 191, 255),
    (64, 128, 96), (159, 191, 0), (191, 96, 0), (0, 128, 32), (0, 223, 96),
)  # fmt: skip

#: Colour returned by :func:`label_color` for negative labels (``-1`` is the padding label of
#: ``FilterDetections``). Mid grey: visible on most images, and absent from the class palette.
PADDING_COLOR: Color = (128, 128, 128)


def label_color(label: int) -> Color:
    """Returns a fixed BGR colour for a class index.

    Labels ``0..79`` each get their own colour from an 80-colour palette ordered so that the
    first labels, and any two neighbouring labels, are far apart in CIELAB. Labels ``>= 80``
    wrap around (``label_color(80) == label_color(0)``). Negative labels, such as the ``-1``
    padding of ``FilterDetections``, get :data:`PADDING_COLOR` (grey) instead of raising, so
    that drawing a padded batch never fails.

    Args:
        label: Class index (``int`` or an integer NumPy scalar).

    Returns:
        A ``(b, g, r)`` tuple of Python ints in ``[0, 255]``; the same for the same label on
        every call.
    """
    label = int(label)
    if label < 0:
        return PADDING_COLOR
    return _PALETTE[label % len(_PALETTE)]


def _text_color(background: Color) -> Color:
    """Black or white, whichever contrasts more with a BGR background colour."""
    b, g, r = background
    # Rec. 601 luma; 128 splits the palette so that dark reds/blues get white text.
    luma = 0.114 * b + 0.587 * g + 0.299 * r
    return (0, 0, 0) if luma >= 128 else (255, 255, 255)
