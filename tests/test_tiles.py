"""Tiled detection of large photos (issue #26): windows cover the photo, objects cut by a
seam are found once and whole, recall on a 3000 x 2000 photo of 20-px shapes is far above
the whole-photo pass, and ``detect(..., tile=...)`` places a real model's boxes in the photo.

The merging is tested with a detector that has a network's resolution limit but needs no
training: it resizes each input as ``detect`` does (shorter side to 256 px), finds the
shapes' solid colour, and reports components of at least 8 x 8 network pixels (the smallest
object a RetinaNet with fitted anchors finds), boxes mapped back to the input's pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from keras_retinanet import models
from keras_retinanet.inference import (
    SEAM_MARGIN,
    Detections,
    class_nms,
    detect,
    detect_tiled,
    tile_windows,
)
from keras_retinanet.model.boxes import compute_overlap
from keras_retinanet.preprocessing.image import compute_resize_scale

COLOURS = {0: (0, 0, 255), 1: (255, 0, 0)}  # BGR: class 0 red, class 1 blue
MIN_SIDE, MAX_SIDE = 256, 4000


def colour_detector(crops: list[np.ndarray]) -> list[Detections]:
    results = []
    for crop in crops:
        scale = compute_resize_scale(crop.shape, MIN_SIDE, MAX_SIDE)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA).astype(np.int32)
        boxes, scores, labels = [], [], []
        for label, colour in COLOURS.items():
            mask = (np.abs(small - colour).sum(axis=2) < 60).astype(np.uint8)
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            for x, y, w, h, area in stats[1:count]:
                if w >= 8 and h >= 8:
                    boxes.append(np.array([x, y, x + w, y + h], np.float32) / scale)
                    scores.append(min(1.0, area / (w * h)))
                    labels.append(label)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        results.append(Detections(boxes, np.float32(scores), np.int32(labels)))
    return results


def large_photo(seed: int = 0, shape=(2000, 3000), side: int = 20, count: int = 240):
    """A grey, noisy photo with ``count`` solid ``side``-px squares (a 3-px gap apart), some
    placed across the seams of 256 x 256 tiles with overlap 0.2; returns (photo, boxes,
    labels)."""
    rng = np.random.default_rng(seed)
    photo = np.clip(rng.normal(128, 12, (*shape, 3)), 0, 255).astype(np.uint8)
    taken = np.zeros(shape, bool)
    boxes, labels = [], []
    seams = [x for x1, _, x2, _ in tile_windows(*shape, (256, 256), 0.2) for x in (x1, x2)]
    while len(boxes) < count:
        if len(boxes) < count // 4:  # across a vertical seam
            x = int(rng.choice(seams)) - int(rng.integers(3, side - 3))
        else:
            x = int(rng.integers(0, shape[1] - side))
        y = int(rng.integers(0, shape[0] - side))
        if x < 0 or x + side > shape[1] or taken[max(0, y - 3) : y + side + 3,
                                                  max(0, x - 3) : x + side + 3].any():  # fmt: skip
            continue
        taken[y : y + side, x : x + side] = True
        label = int(rng.integers(0, 2))
        photo[y : y + side, x : x + side] = COLOURS[label]
        boxes.append((x, y, x + side, y + side))
        labels.append(label)
    return photo, np.asarray(boxes, np.float32), np.asarray(labels)


def recall(found: Detections, boxes: np.ndarray, labels: np.ndarray) -> float:
    if not len(found):
        return 0.0
    iou = compute_overlap(boxes, found.boxes)
    iou[labels[:, None] != found.labels[None, :]] = 0
    return float((iou.max(axis=1) >= 0.5).mean())


def test_windows_cover_the_photo_with_the_overlap():
    windows = tile_windows(2000, 3000, (256, 256), 0.2)
    cover = np.zeros((2000, 3000), np.int32)
    for x1, y1, x2, y2 in windows:
        assert (x2 - x1, y2 - y1) == (256, 256)
        cover[y1:y2, x1:x2] += 1
    assert cover.min() >= 1
    xs = sorted({w[0] for w in windows})
    assert xs[0] == 0 and xs[-1] == 3000 - 256
    assert all(b - a <= 0.8 * 256 for a, b in zip(xs, xs[1:]))
    assert tile_windows(100, 120, (256, 256), 0.2) == [(0, 0, 120, 100)]  # smaller: one tile


def test_class_nms_keeps_the_best_of_each_class():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], "f4")
    found = class_nms(Detections(boxes, np.array([0.5, 0.9, 0.7, 0.2], "f4"),
                                 np.array([0, 0, 1, 0], "i4")), 0.5)  # fmt: skip
    assert found.scores.tolist() == pytest.approx([0.9, 0.7, 0.2])
    assert found.labels.tolist() == [0, 1, 0]


def test_tiles_find_the_small_objects_once_each():
    photo, boxes, labels = large_photo()
    whole = colour_detector([photo])[0]
    tiled = detect_tiled(colour_detector, photo, (256, 256), overlap=0.2)
    assert recall(whole, boxes, labels) < 0.05  # 20 px become 2.6 px at a 256-px side
    assert recall(tiled, boxes, labels) == 1.0
    # No duplicates: one detection per object, seams included, each the whole object.
    assert len(tiled) == len(boxes)
    iou = compute_overlap(tiled.boxes, tiled.boxes)
    np.fill_diagonal(iou, 0)
    assert iou.max() < 0.1
    across = boxes[: len(boxes) // 4]
    best = compute_overlap(across, tiled.boxes).max(axis=1)
    assert best.min() > 0.8  # cut pieces were dropped, the whole square kept
    # Without the seam rule the cut pieces survive NMS as extra detections.
    import keras_retinanet.inference as tiles

    original = tiles.SEAM_MARGIN
    try:
        tiles.SEAM_MARGIN = -1e9  # nothing counts as cut
        loose = detect_tiled(colour_detector, photo, (256, 256), overlap=0.2)
    finally:
        tiles.SEAM_MARGIN = original
    assert len(loose) > len(boxes)
    assert SEAM_MARGIN == original


def test_whole_photo_pass_adds_objects_larger_than_the_tiles():
    photo, boxes, labels = large_photo(count=40)
    photo[500:1400, 1000:2000] = COLOURS[1]  # a 1000 x 900 object: every tile cuts it
    big = np.array([[1000, 500, 2000, 1400]], np.float32)
    tiled = detect_tiled(colour_detector, photo, (256, 256), overlap=0.2)
    assert recall(tiled, big, np.array([1])) == 0.0
    both = detect_tiled(colour_detector, photo, (256, 256), overlap=0.2, whole=True)
    assert recall(both, big, np.array([1])) == 1.0
    assert recall(both, boxes, labels) > 0.9


def test_detect_with_tiles_puts_a_models_boxes_in_the_photo(untrained_voc_model):
    model = models.retinanet_box(untrained_voc_model, score_threshold=0.0, max_detections=20)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (150, 260, 3), dtype=np.uint8)
    # One tile as large as the photo: the same as no tiles.
    plain = detect(model, [photo], 128, 300)[0]
    single = detect(model, [photo], 128, 300, tile=(150, 260))[0]
    np.testing.assert_allclose(np.sort(single.scores), np.sort(plain.scores), atol=1e-6)
    # Two tiles: every box lies in the photo, and each comes from its tile's own detections.
    found = detect(model, [photo], 128, 300, tile=(150, 150), tile_overlap=0.2)[0]
    assert len(found) > 0 and (found.boxes >= 0).all()
    assert (found.boxes[:, [0, 2]] <= 260).all() and (found.boxes[:, [1, 3]] <= 150).all()
    left = detect(model, [photo[:, :150]], 128, 300)[0]
    right = detect(model, [photo[:, 110:]], 128, 300)[0]
    right.boxes[:, [0, 2]] += 110
    pool = np.concatenate([left.scores, right.scores])
    for score in found.scores:
        assert np.abs(pool - score).min() < 1e-6


def test_predict_and_evaluate_take_tiles(tmp_path, capsys):
    import json

    from heads import small_snapshot

    from keras_retinanet.cli import evaluate as evaluate_cli
    from keras_retinanet.cli import predict as predict_cli

    snapshot, _, _ = small_snapshot(tmp_path / "snapshot.keras")
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (200, 300, 3), np.uint8))
    out = tmp_path / "out"
    argv = [str(snapshot), str(photo), "-o", str(out), "--no-draw", "--score-threshold", "0.2"]
    assert predict_cli.main([*argv, "--tile", "100", "120", "--tile-overlap", "0.25"]) == 0
    document = json.loads((out / "detections.json").read_text())
    assert document["tile"] == {"size": [100, 120], "overlap": 0.25, "whole": False}
    tiled = document["images"][0]["detections"]
    assert len(tiled) > 0
    assert "tiles" in capsys.readouterr().err  # the progress bar over tiles
    assert predict_cli.main(argv) == 0
    whole = json.loads((out / "detections.json").read_text())["images"][0]["detections"]
    assert sorted(d["score"] for d in tiled) != sorted(d["score"] for d in whole)
    (tmp_path / "truth.csv").write_text(f"{photo},10,10,60,60,a\n")
    (tmp_path / "classes.csv").write_text("a,0\nb,1\nc,2\n")
    dataset = ["csv", str(tmp_path / "truth.csv"), str(tmp_path / "classes.csv")]
    assert evaluate_cli.main([*dataset, str(snapshot), "--tile", "100", "120", "--tile-whole"]) == 0
    assert "mAP" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        predict_cli.main([*argv, "--tile-whole"])
    assert "--tile-whole goes with --tile" in capsys.readouterr().err
