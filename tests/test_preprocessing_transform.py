"""Augmentation of an image with its boxes: flips, determinism, boxes dropped consistently."""

import pickle

import numpy as np
import pytest

from keras_retinanet.preprocessing.transform import (
    filter_boxes,
    flip_boxes_horizontally,
    random_transform,
    select_boxes,
)


def sample(height=60, width=80):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    annotations = {
        "bboxes": np.array(
            [[0, 0, 20, 10], [30, 20, 80, 60], [5, 40, 25, 58], [60, 1, 70, 9]], dtype=np.float32
        ),
        "labels": np.array([0, 1, 2, 3], dtype=np.int64),
        "difficult": np.array([False, True, False, True]),
    }
    return image, annotations


def test_flip_boxes_is_its_own_inverse_and_matches_the_pixels():
    boxes = np.array([[0, 0, 20, 10], [30.5, 2, 80, 9]], dtype=np.float32)
    # Width 80: [0, 20) covers columns 0..19, mirrored to columns 60..79 = [60, 80).
    np.testing.assert_array_equal(
        flip_boxes_horizontally(boxes, 80), [[60, 0, 80, 10], [0, 2, 49.5, 9]]
    )
    np.testing.assert_array_equal(
        flip_boxes_horizontally(flip_boxes_horizontally(boxes, 80), 80), boxes
    )


def test_flip_only_mirrors_image_and_boxes_and_keeps_labels():
    image, annotations = sample()
    transform = random_transform(flip_prob=1.0, scale=None, translate=0.0, color_jitter=False)
    out_image, out = transform(image, annotations, seed=3)
    np.testing.assert_array_equal(out_image, image[:, ::-1])
    np.testing.assert_allclose(
        out["bboxes"], flip_boxes_horizontally(annotations["bboxes"], 80), atol=1e-4
    )
    assert out["labels"].tolist() == [0, 1, 2, 3]
    assert out["difficult"].tolist() == [False, True, False, True]
    assert image.flags.writeable and annotations["bboxes"][0, 2] == 20  # inputs untouched


def test_disabled_transform_is_identity():
    image, annotations = sample()
    transform = random_transform(flip_prob=0.0, scale=None, translate=0.0, color_jitter=False)
    out_image, out = transform(image, annotations, seed=1)
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out["bboxes"], annotations["bboxes"])


def test_same_seed_same_output_different_seed_different_output():
    image, annotations = sample()
    transform = random_transform(scale=(0.7, 1.3), translate=0.2)
    first = transform(image, annotations, seed=42)
    again = random_transform(scale=(0.7, 1.3), translate=0.2)(image, annotations, seed=42)
    other = transform(image, annotations, seed=43)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1]["bboxes"], again[1]["bboxes"])
    assert not np.array_equal(first[0], other[0])
    # The constructor's seed makes the sequence of unseeded calls reproducible too.
    a, b = random_transform(seed=5), random_transform(seed=5)
    for _ in range(3):
        np.testing.assert_array_equal(a(image, annotations)[0], b(image, annotations)[0])


def test_boxes_pushed_out_are_dropped_with_their_labels_and_flags():
    image, annotations = sample()
    transform = random_transform(
        flip_prob=0.5, scale=(0.8, 1.5), translate=0.45, min_visibility=0.3
    )
    dropped_some = False
    for seed in range(30):
        out_image, out = transform(image, annotations, seed=seed)
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        n = len(out["bboxes"])
        assert len(out["labels"]) == len(out["difficult"]) == n
        # Labels were chosen so that difficult == label is odd: the pairing must survive.
        assert out["difficult"].tolist() == [bool(v % 2) for v in out["labels"]]
        boxes = out["bboxes"]
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 60).all()
        assert ((boxes[:, 2] - boxes[:, 0]) >= 1).all() and ((boxes[:, 3] - boxes[:, 1]) >= 1).all()
        dropped_some |= n < 4
    assert dropped_some  # with 45% shifts some box must leave the image


def test_colour_jitter_changes_pixels_not_boxes():
    image, annotations = sample()
    transform = random_transform(flip_prob=0.0, scale=None, translate=0.0, color_jitter=True)
    changed = 0
    for seed in range(6):
        out_image, out = transform(image, annotations, seed=seed)
        np.testing.assert_array_equal(out["bboxes"], annotations["bboxes"])
        changed += not np.array_equal(out_image, image)
    assert changed > 0


def test_pickles_for_multiprocessing():
    image, annotations = sample()
    transform = random_transform(seed=0)
    expected = transform(image, annotations, seed=9)
    restored = pickle.loads(pickle.dumps(transform))
    np.testing.assert_array_equal(restored(image, annotations, seed=9)[0], expected[0])


def test_filter_boxes_clips_and_drops():
    annotations = {
        "bboxes": np.array(
            [[-0.5, 0, 10, 10], [5, 5, 5, 9], [-30, 0, -5, 10], [90, 0, 120, 10], [70, 50, 99, 60]],
            dtype=np.float32,
        ),
        "labels": np.arange(5),
    }
    kept, dropped, clipped = filter_boxes(annotations, height=60, width=80)
    # Box 1 is zero-width; box 2 lies left of the image and box 3 right of it (clipped to
    # x1 = x2 = 80); box 4 reaches 19 px past x = 80, box 0 only half a pixel past x = 0.
    assert dropped.tolist() == [False, True, True, True, False]
    assert clipped.tolist() == [False, False, False, False, True]
    np.testing.assert_array_equal(kept["labels"], [0, 4])
    np.testing.assert_array_equal(kept["bboxes"], [[0, 0, 10, 10], [70, 50, 80, 60]])


def test_select_boxes_keeps_arrays_aligned():
    image, annotations = sample()
    picked = select_boxes(annotations, np.array([3, 1]))
    assert picked["labels"].tolist() == [3, 1] and picked["difficult"].tolist() == [True, True]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="flip_prob"):
        random_transform(flip_prob=2)
    with pytest.raises(ValueError, match="scale"):
        random_transform(scale=(1.2, 0.8))
