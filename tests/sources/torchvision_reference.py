"""Reference outputs of torchvision's RetinaNet, for tests/test_convert_torchvision.py.

Runs in a Python with torch and torchvision (not this package's environment): builds
``retinanet_resnet50_fpn`` (v1) or ``retinanet_resnet50_fpn_v2`` with random weights and
random BatchNorm statistics, saves its state_dict the way the user's file would be (zip or
legacy layout, current or pre-0.13 key names), runs it in eval mode on an image and writes
what the test compares to ``OUT/reference.npz``: sigmoid class scores and box deltas of every
anchor, the anchors, and the final boxes, scores and labels.

Usage: python torchvision_reference.py IMAGE.npy OUT_DIR --arch v1 [--num-classes 5]
       [--legacy-file] [--old-keys] [--bn-eps 0]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
import torchvision
from torchvision.models.detection import retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2


def randomise(model: torch.nn.Module, image: torch.Tensor, seed: int) -> None:
    """Random weights everywhere and BatchNorm statistics near the real ones of ``image``, so
    activations keep a sane scale through 50 layers while no statistic is the default."""
    generator = torch.Generator().manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:  # take this image's batch statistics as running statistics
        m.reset_running_stats()
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        images, _ = model.transform([image])
        model.backbone(images.tensors)
    model.eval()
    with torch.no_grad():
        for m in norms:
            shape = m.running_var.shape
            m.running_var.mul_(0.8 + 0.4 * torch.rand(shape, generator=generator))
            m.running_mean.add_(0.1 * torch.randn(shape, generator=generator))
            m.weight.copy_(0.5 + torch.rand(shape, generator=generator))
            m.bias.copy_(0.1 * torch.randn(shape, generator=generator))
        for p in model.backbone.fpn.parameters():
            fan_in = p[0].numel() if p.dim() == 4 else 1
            p.copy_(torch.randn(p.shape, generator=generator) / fan_in**0.5 * (p.dim() == 4))
        for name, p in model.head.named_parameters():
            if p.dim() == 4:  # He-normal hidden convs keep the scale through the heads
                p.copy_(torch.randn(p.shape, generator=generator) * (2.0 / p[0].numel()) ** 0.5)
            elif ".1.weight" in name:  # GroupNorm scale
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
        # Rescale the last convs so that class logits spread around -3 (a few hundred scores
        # above 0.05) and box deltas stay small, as in a trained model.
        images, _ = model.transform([image])
        features = list(model.backbone(images.tensors).values())
        head = model.head(features)
        for module, output, scale, bias in (
            (model.head.classification_head.cls_logits, head["cls_logits"], 1.0, -3.5),
            (model.head.regression_head.bbox_reg, head["bbox_regression"], 0.3, 0.0),
        ):
            module.weight.mul_(scale / (output - module.bias.mean()).std())
            module.bias.copy_(bias + 0.2 * torch.randn(module.bias.shape, generator=generator))


def old_key_names(state: dict) -> dict:
    """The pre-0.13 names: FPN ``inner_blocks.i.weight`` and head ``conv.{2i}.weight`` (no
    ``Conv2dNormActivation`` wrapper, a ReLU module between the convs)."""
    renamed = {}
    for key, value in state.items():
        for block in ("inner_blocks", "layer_blocks"):
            for i in range(3):
                key = key.replace(f"fpn.{block}.{i}.0.", f"fpn.{block}.{i}.")
        for i in range(4):
            key = key.replace(f"head.conv.{i}.0.", f"head.conv.{2 * i}.")
        renamed[key] = value
    return renamed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image", help=".npy uint8 RGB image (H, W, 3)")
    parser.add_argument("out")
    parser.add_argument("--arch", choices=("v1", "v2"), default="v1")
    parser.add_argument("--num-classes", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legacy-file", action="store_true")
    parser.add_argument("--old-keys", action="store_true")
    parser.add_argument("--bn-eps", type=float, default=None)
    parser.add_argument(
        "--resize",
        type=int,
        nargs=2,
        metavar=("MIN", "MAX"),
        help="torchvision's own resize (and padding to 32) instead of keeping the image size",
    )
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rgb = np.load(args.image)
    height, width = rgb.shape[:2]
    build = retinanet_resnet50_fpn if args.arch == "v1" else retinanet_resnet50_fpn_v2
    # min/max size = the image's, so the transform keeps its size (scale 1, no resize).
    min_size, max_size = args.resize or (min(height, width), max(height, width))
    model = build(
        weights=None,
        weights_backbone=None,
        num_classes=args.num_classes,
        min_size=min_size,
        max_size=max_size,
    )
    image = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    randomise(model, image, args.seed)
    if args.bn_eps is not None:  # the published v1 file runs with eps 0 (overwrite_eps)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = args.bn_eps
    os.makedirs(args.out, exist_ok=True)
    state = model.state_dict()
    if args.old_keys:
        state = old_key_names(dict(state))
        # torchvision itself must accept the old names (its _load_from_state_dict renames them).
        check = build(weights=None, weights_backbone=None, num_classes=args.num_classes)
        check.load_state_dict(state, strict=True)
    torch.save(
        state,
        os.path.join(args.out, "model.pth"),
        _use_new_zipfile_serialization=not args.legacy_file,
    )
    with torch.no_grad():
        images, _ = model.transform([image])
        if not args.resize:
            assert tuple(images.image_sizes[0]) == (height, width), images.image_sizes
        features = list(model.backbone(images.tensors).values())
        head = model.head(features)
        anchors = model.anchor_generator(images, features)[0]
        detections = model([image])[0]
    np.savez(
        os.path.join(args.out, "reference.npz"),
        input_shape=np.array(images.tensors.shape),
        classification=torch.sigmoid(head["cls_logits"][0]).numpy(),
        regression=head["bbox_regression"][0].numpy(),
        anchors=anchors.numpy(),
        boxes=detections["boxes"].numpy(),
        scores=detections["scores"].numpy(),
        labels=detections["labels"].numpy(),
        torchvision_version=np.array(torchvision.__version__),
    )


if __name__ == "__main__":
    main()
