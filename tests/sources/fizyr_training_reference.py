"""What fizyr keras-retinanet 1.0.0's training computes on a batch, for
tests/test_training_equivalence.py.

Runs as ``fizyr_reference.py`` does (fizyr's package on PYTHONPATH, TensorFlow with ``tf_keras``;
that module's Keras 2 shim is imported from it). For the images, boxes and labels in
``BATCH.npz`` it computes what fizyr's ``Generator.compute_targets`` does, the anchors of the
batch's largest image (``anchors_for_shape``, shapes by ``guess_shapes``) and
``anchor_targets_bbox``, then fizyr's ``focal()`` and ``smooth_l1()`` on those targets and the
predictions in the same file, and writes them to ``OUT/reference.npz``.

Usage: python fizyr_training_reference.py BATCH.npz OUT_DIR [--num-classes 5]
BATCH.npz holds ``image_0``, ``boxes_0``, ``labels_0``, ``image_1``, ... (BGR (H, W, 3),
float (M, 4) ``(x1, y1, x2, y2)`` pixels, int (M,)) and ``classification`` ``(B, N, K)``,
``regression`` ``(B, N, 4)`` predictions for the batch's N anchors.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fizyr_reference  # noqa: E402, F401  (the Keras 2 shim fizyr's code needs)
import numpy as np  # noqa: E402
from keras_retinanet.utils.anchors import anchor_targets_bbox, anchors_for_shape  # noqa: E402

from keras_retinanet import losses  # noqa: E402  (fizyr's package, from PYTHONPATH)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("batch")
    parser.add_argument("out")
    parser.add_argument("--num-classes", type=int, default=5)
    args = parser.parse_args()
    data = np.load(args.batch)
    count = len([k for k in data.files if k.startswith("image_")])
    images = [data[f"image_{i}"] for i in range(count)]
    annotations = [
        {"bboxes": data[f"boxes_{i}"].astype(np.float64), "labels": data[f"labels_{i}"]}
        for i in range(count)
    ]
    # fizyr's Generator.compute_targets: the anchors of the largest image in the group.
    max_shape = tuple(max(image.shape[x] for image in images) for x in range(3))
    anchors = anchors_for_shape(max_shape)
    regression, labels = anchor_targets_bbox(anchors, images, annotations, args.num_classes)
    focal = losses.focal()(labels, data["classification"])
    smooth_l1 = losses.smooth_l1()(regression, data["regression"])
    os.makedirs(args.out, exist_ok=True)
    np.savez(
        os.path.join(args.out, "reference.npz"),
        anchors=anchors,
        regression=regression,
        labels=labels,
        focal=np.asarray(focal),
        smooth_l1=np.asarray(smooth_l1),
    )


if __name__ == "__main__":
    main()
