"""What torchvision's own training computes on a batch, for tests/test_training_equivalence.py.

Runs in a Python with torch and torchvision (not this package's environment). Builds
``retinanet_resnet50_fpn`` (v1) or ``retinanet_resnet50_fpn_v2`` with random weights
(:func:`torchvision_reference.randomise`), saves its state_dict, and runs one training forward
``model(images, targets)`` on the batch in ``BATCH.npz`` and a backward pass of the summed
losses. Two things are set so that both sides compute from the same input and the same
weights: the transform keeps every image's size (its resize is the identity, as the images
are already at network size; it still normalises and pads to 32), and the BatchNorm layers
run on their stored statistics (the converted model's are frozen, as torchvision's are when it
starts from pretrained weights, ``FrozenBatchNorm2d``).

Writes ``OUT/model.pth`` and ``OUT/reference.npz``: the ``classification`` and
``bbox_regression`` losses, the gradients of the heads' last convolutions
(``cls_logits``/``bbox_reg`` weight and bias), each image's matched box per anchor (-1 below
0.4, -2 between) and the padded input shape.

Usage: python torchvision_training_reference.py BATCH.npz OUT_DIR --arch v1 [--num-classes 5]
BATCH.npz holds ``image_0``, ``boxes_0``, ``labels_0``, ``image_1``, ... (RGB uint8 (H, W, 3),
float32 (M, 4) ``(x1, y1, x2, y2)`` pixels, int64 (M,)).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2
from torchvision.ops import box_iou

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torchvision_reference import randomise  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("batch", help=".npz with image_i, boxes_i, labels_i")
    parser.add_argument("out")
    parser.add_argument("--arch", choices=("v1", "v2"), default="v1")
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = np.load(args.batch)
    count = len([k for k in data.files if k.startswith("image_")])
    images = [
        torch.from_numpy(data[f"image_{i}"]).permute(2, 0, 1).float() / 255.0 for i in range(count)
    ]
    targets = [
        {
            "boxes": torch.from_numpy(data[f"boxes_{i}"].astype(np.float32)),
            "labels": torch.from_numpy(data[f"labels_{i}"].astype(np.int64)),
        }
        for i in range(count)
    ]
    build = retinanet_resnet50_fpn if args.arch == "v1" else retinanet_resnet50_fpn_v2
    model = build(weights=None, weights_backbone=None, num_classes=args.num_classes)
    model.transform.resize = lambda image, target=None: (image, target)  # already at size
    randomise(model, images[0], args.seed)
    os.makedirs(args.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.out, "model.pth"))

    model.train()
    for module in model.modules():  # stored statistics, as the converted (frozen) model
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    model.zero_grad()
    losses = model(images, targets)
    sum(losses.values()).backward()

    with torch.no_grad():  # the matches torchvision's loss used, for a readable failure
        batch, _ = model.transform(images, targets)
        features = list(model.backbone(batch.tensors).values())
        anchors = model.anchor_generator(batch, features)
        matched = [
            model.proposal_matcher(box_iou(t["boxes"], a)).numpy() for t, a in zip(targets, anchors)
        ]
    head = model.head
    np.savez(
        os.path.join(args.out, "reference.npz"),
        input_shape=np.array(batch.tensors.shape),
        classification=losses["classification"].detach().numpy(),
        bbox_regression=losses["bbox_regression"].detach().numpy(),
        cls_weight=head.classification_head.cls_logits.weight.grad.numpy(),
        cls_bias=head.classification_head.cls_logits.bias.grad.numpy(),
        reg_weight=head.regression_head.bbox_reg.weight.grad.numpy(),
        reg_bias=head.regression_head.bbox_reg.bias.grad.numpy(),
        **{f"matched_{i}": m for i, m in enumerate(matched)},
    )


if __name__ == "__main__":
    main()
