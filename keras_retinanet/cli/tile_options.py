"""``--tile H W``, ``--tile-overlap F`` and ``--tile-whole``: the options of tiled detection
that ``retinanet-predict`` and ``retinanet-evaluate`` share (:mod:`keras_retinanet.inference`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from keras_retinanet.inference import DEFAULT_TILE_OVERLAP


def add_tile_arguments(
    parser: argparse.ArgumentParser, default: Callable[[Any], Any] = lambda value: value
) -> None:
    """Add the tiling options to a command's parser (``default`` maps each default, e.g. to
    ``argparse.SUPPRESS`` in a sub-command that shares them)."""
    parser.add_argument(
        "--tile",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=default(None),
        help="detect large photos tile by tile: tiles of H x W photo pixels (e.g. the training "
        "size), each resized as a photo is, merged by class-wise NMS; for small objects in "
        "big photos (default: whole photos)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=float,
        default=default(DEFAULT_TILE_OVERLAP),
        help="share of a tile side that neighbouring tiles share; make it wider than the "
        "objects (default: %(default)s)",
    )
    parser.add_argument(
        "--tile-whole",
        action="store_true",
        default=default(False),
        help="with --tile, also detect on the whole photo, for objects larger than the overlap",
    )


def check_tile_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error on a bad tile size or overlap."""
    if args.tile is not None and min(args.tile) < 1:
        parser.error(f"--tile needs two positive sizes, got {args.tile}")
    if not 0.0 <= args.tile_overlap <= 0.9:
        parser.error(f"--tile-overlap must be in [0, 0.9], got {args.tile_overlap}")
    if args.tile is None and args.tile_whole:
        parser.error("--tile-whole goes with --tile H W")
