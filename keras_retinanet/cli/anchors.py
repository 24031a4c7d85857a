"""``retinanet-anchors``: fit anchor sizes, scales and ratios to a dataset's boxes.

Prints the uncovered share (no anchor with IoU >= 0.5) per class and per box size with the
starting anchors and with the fitted ones, advises an image size for boxes that no anchor
can reach, and writes the fitted anchors as a JSON file that ``--config`` of every command
reads. See :mod:`keras_retinanet.preprocessing.anchor_fit`.

Examples::

    retinanet-anchors voc data/cells --image-min-side 256 --image-max-side 352 -o cells.json
    retinanet-debug voc data/cells --set test --image-min-side 256 --config cells.json
    retinanet-train --config cells.json ... voc data/cells
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from keras_retinanet.cli.debug import _settings, add_dataset_commands, create_generator
from keras_retinanet.errors import DEBUG_HELP, run_command
from keras_retinanet.preprocessing.anchor_fit import (
    collect_boxes,
    coverage_table,
    describe,
    fit_anchors,
    size_advice,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="retinanet-anchors",
        description="Fit anchor sizes, scales and ratios to a dataset's boxes at the training "
        "image size, print the coverage before and after, and write the anchors for --config.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o", "--output", default="anchors.json", help="anchor file to write (default: %(default)s)"
    )
    common.add_argument("--image-min-side", type=int, default=None, help="default: 800")
    common.add_argument("--image-max-side", type=int, default=None, help="default: 1333")
    common.add_argument(
        "--config", help="anchors to start from (.json or .ini); their strides stay"
    )
    common.add_argument(
        "--snapshot", help="take the anchors, image sizes and model variant from this snapshot"
    )
    common.add_argument(
        "--random-transform",
        action="store_true",
        help="fit to the boxes after the training augmentation (decodes every image)",
    )
    common.add_argument(
        "--passes", type=int, default=2, help="augmented passes with --random-transform (2)"
    )
    common.add_argument("--seed", type=int, default=0, help="seed of --random-transform")
    common.add_argument("--limit", type=int, help="use N images spread over the dataset")
    common.add_argument("--num-ratios", type=int, help="ratios per location (default: as now)")
    common.add_argument("--num-scales", type=int, help="scales per location (default: as now)")
    common.add_argument(
        "--positive-overlap", type=float, default=0.5, help="IoU of a positive anchor (0.5)"
    )
    common.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dataset_commands(parser, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-anchors`` (errors as one line; ``--debug``: traceback)."""
    return run_command("retinanet-anchors", _main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.passes < 1:
        parser.error(f"--passes must be at least 1, got {args.passes}")
    start, min_side, _, _ = _settings(args)
    generator = create_generator(args)
    sample = collect_boxes(
        generator, args.random_transform, args.passes, args.limit, not args.no_progress
    )
    if not len(sample):
        print(f"retinanet-anchors: error: no boxes in {generator.dataset_info()}", file=sys.stderr)
        return 2
    rule = generator.variant.anchor_rule
    before, after = fit_anchors(
        sample, start, rule, args.positive_overlap, args.num_ratios, args.num_scales
    )
    print(f"{len(sample)} boxes in {sample.images} images at --image-min-side {min_side}")
    print(f"start:  {describe(before.params)}")
    print(f"fitted: {describe(after.params)}")
    print(
        coverage_table(sample, [("start", before), ("fitted", after)], args.positive_overlap, rule)
    )
    advice = size_advice(
        sample, after, min_side, generator.pad_multiple, rule, args.positive_overlap
    )
    if advice:
        print("still uncovered with the fitted anchors:")
        print("\n".join("  " + line for line in advice))
    record = {
        "anchor_parameters": after.params.to_dict(),
        "fitted_to": {
            "dataset": generator.dataset_info(),
            "image_min_side": generator.image_min_side,
            "image_max_side": generator.image_max_side,
            "augmented": bool(args.random_transform),
            "boxes": len(sample),
            "uncovered_share_before": 1 - before.share,
            "uncovered_share_after": 1 - after.share,
        },
    }
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
    print(f"anchors written to {args.output}; use them with --config {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
