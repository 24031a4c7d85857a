"""Tests for model/layers.py: exact outputs of the small layers, FilterDetections against
a NumPy greedy NMS reference, and config round trips."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_retinanet.model.boxes import compute_overlap
from keras_retinanet.model.layers import (
    Anchors,
    ClipBoxes,
    ErfGelu,
    FilterDetections,
    NormalizeInput,
    RegressBoxes,
    UpsampleLike,
    greedy_nms_mask,
    prior_bias,
)


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def run_filter(boxes, classification, **kwargs):
    """FilterDetections on NumPy inputs; returns NumPy (boxes, scores, labels)."""
    layer = FilterDetections(**kwargs)
    outputs = layer([np.asarray(boxes, np.float32), np.asarray(classification, np.float32)])
    return tuple(to_numpy(o) for o in outputs)


# --------------------------------------------------------------------------- UpsampleLike


def test_upsample_like_2x_nearest():
    source = np.array([[1, 2], [3, 4]], dtype=np.float32).reshape(1, 2, 2, 1)
    target = np.zeros((1, 4, 4, 5), dtype=np.float32)  # only its spatial size matters
    out = to_numpy(UpsampleLike()([source, target]))
    assert out.shape == (1, 4, 4, 1)
    np.testing.assert_array_equal(
        out[0, :, :, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]]
    )


def test_upsample_like_crops_to_odd_target():
    # 2 x 3 -> 3 x 5: row i takes floor(i * 2 / 3) = 0, 0, 1; column j takes
    # floor(j * 3 / 5) = 0, 0, 1, 1, 2, i.e. 2x nearest cropped to the finer map.
    source = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32).reshape(1, 2, 3, 1)
    source = np.concatenate([source, 10 * source], axis=-1)  # two channels, kept apart
    target = np.zeros((1, 3, 5, 1), dtype=np.float32)
    out = to_numpy(UpsampleLike()([source, target]))
    assert out.shape == (1, 3, 5, 2)
    expected = np.array([[1, 1, 2, 2, 3], [1, 1, 2, 2, 3], [4, 4, 5, 5, 6]], dtype=np.float32)
    np.testing.assert_array_equal(out[0, :, :, 0], expected)
    np.testing.assert_array_equal(out[0, :, :, 1], 10 * expected)


def test_upsample_like_in_a_functional_model_with_unknown_sizes():
    source_in = keras.Input((None, None, 2))
    target_in = keras.Input((None, None, 7))
    output = UpsampleLike()([source_in, target_in])
    assert output.shape == (None, None, None, 2)
    model = keras.Model([source_in, target_in], output)
    source = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    out = to_numpy(model([source, np.zeros((2, 6, 4, 7), np.float32)]))
    assert out.shape == (2, 6, 4, 2)
    # 2x nearest: each source pixel fills a 2 x 2 block.
    np.testing.assert_array_equal(out[:, ::2, ::2], source)
    np.testing.assert_array_equal(out[:, 1::2, 1::2], source)


# --------------------------------------------------------------------------- small layers


def test_regress_boxes_known_values():
    anchors = np.array([[[0, 0, 10, 20], [10, 10, 20, 20]]], dtype=np.float32)
    # Anchor 0: deltas (0.5, 0.5, 1, -0.5) * 0.2 = (0.1, 0.1, 0.2, -0.1) of its 10 x 20
    #   -> (1, 2, 12, 18). Anchor 1: zero deltas -> unchanged.
    deltas = np.array([[[0.5, 0.5, 1.0, -0.5], [0, 0, 0, 0]]], dtype=np.float32)
    out = to_numpy(RegressBoxes()([anchors, deltas]))
    np.testing.assert_allclose(out, [[[1, 2, 12, 18], [10, 10, 20, 20]]], atol=1e-5)
    # std 1 and mean 0.1 per coordinate: (0.5 + 0.1) * 10 = 6 -> x1 = 6 for anchor 0.
    out = to_numpy(RegressBoxes(mean=0.1, std=1.0)([anchors, deltas]))
    np.testing.assert_allclose(out[0, 0, 0], 6.0, atol=1e-5)


def test_clip_boxes_layer_uses_image_size():
    image = np.zeros((1, 30, 50, 3), dtype=np.float32)  # H = 30, W = 50
    boxes = np.array([[[-4, -4, 60, 20], [10, 25, 40, 35]]], dtype=np.float32)
    out = to_numpy(ClipBoxes()([image, boxes]))
    np.testing.assert_array_equal(out, [[[0, 0, 50, 20], [10, 25, 40, 30]]])


def test_prior_bias_gives_the_probability():
    # sigmoid(-log((1 - p) / p)) = p; for p = 0.01 the bias is -log(99) = -4.59512.
    assert prior_bias(0.01) == pytest.approx(-math.log(99.0))
    for p in (0.01, 0.1, 0.5):
        assert 1.0 / (1.0 + math.exp(-prior_bias(p))) == pytest.approx(p)


# --------------------------------------------------------------------------- FilterDetections


def test_overlapping_boxes_same_class_one_kept():
    # IoU([0,0,10,10], [1,0,11,10]) = 90 / 110 = 0.82 > 0.5: the lower score is suppressed.
    boxes = [[[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]]]
    classification = [[[0.9, 0.0], [0.8, 0.0], [0.0, 0.7]]]
    out_boxes, scores, labels = run_filter(boxes, classification, max_detections=5)
    np.testing.assert_allclose(scores[0], [0.9, 0.7, -1, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(labels[0], [0, 1, -1, -1, -1])
    np.testing.assert_array_equal(out_boxes[0, :2], [[0, 0, 10, 10], [50, 50, 60, 60]])


def test_same_boxes_different_classes():
    # Two anchors with the same box, best classes 0 and 1.
    boxes = [[[0, 0, 10, 10], [0, 0, 10, 10]]]
    classification = [[[0.9, 0.1], [0.2, 0.8]]]
    # Class-specific: per-class NMS keeps both (and nothing else is above 0.05 except the
    # 0.1 and 0.2 entries, which the same-class higher boxes suppress).
    _, scores, labels = run_filter(boxes, classification, max_detections=4)
    np.testing.assert_allclose(scores[0], [0.9, 0.8, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(labels[0], [0, 1, -1, -1])
    # Class-agnostic: each anchor keeps its best class, then one box suppresses the other.
    _, scores, labels = run_filter(
        boxes, classification, max_detections=4, class_specific_filter=False
    )
    np.testing.assert_allclose(scores[0], [0.9, -1, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(labels[0], [0, -1, -1, -1])


def test_score_threshold_is_strict():
    boxes = [[[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]]
    classification = [[[0.5], [0.25], [0.5000001]]]
    _, scores, labels = run_filter(boxes, classification, score_threshold=0.5, max_detections=3)
    # Only the score strictly above 0.5 is kept; exactly 0.5 is not.
    np.testing.assert_allclose(scores[0], [0.5000001, -1, -1], atol=1e-7)
    np.testing.assert_array_equal(labels[0], [0, -1, -1])


def test_padding_dtypes_and_sorting():
    rng = np.random.default_rng(0)
    boxes = np.array([[[i * 20, 0, i * 20 + 10, 10] for i in range(6)]], dtype=np.float32)
    classification = np.zeros((1, 6, 3), dtype=np.float32)
    classification[0, np.arange(6), rng.integers(0, 3, 6)] = [0.3, 0.9, 0.1, 0.6, 0.02, 0.7]
    layer = FilterDetections(max_detections=8)
    out_boxes, scores, labels = layer([boxes, classification])
    assert ops.convert_to_numpy(out_boxes).dtype == np.float32
    assert ops.convert_to_numpy(scores).dtype == np.float32
    assert ops.convert_to_numpy(labels).dtype == np.int32
    out_boxes, scores, labels = to_numpy(out_boxes), to_numpy(scores), to_numpy(labels)
    assert out_boxes.shape == (1, 8, 4) and scores.shape == (1, 8) and labels.shape == (1, 8)
    # Disjoint boxes, nothing suppressed; 0.02 is below the 0.05 threshold. Sorted by score.
    np.testing.assert_allclose(scores[0, :5], [0.9, 0.7, 0.6, 0.3, 0.1], atol=1e-6)
    np.testing.assert_array_equal(out_boxes[0, :5, 0], [20, 100, 60, 0, 40])
    # Rows past the last detection are -1 in all three outputs.
    np.testing.assert_array_equal(scores[0, 5:], -1)
    np.testing.assert_array_equal(labels[0, 5:], -1)
    np.testing.assert_array_equal(out_boxes[0, 5:], -1)


def test_iou_exactly_at_threshold_is_not_suppressed():
    # IoU([0,0,10,10], [0,0,10,5]) = 50 / 100 = 0.5, exact in floating point: kept at 0.5,
    # suppressed when the lower box grows to y2 = 5.01 (IoU 0.501).
    classification = [[[0.9], [0.8]]]
    _, scores, _ = run_filter([[[0, 0, 10, 10], [0, 0, 10, 5]]], classification, max_detections=2)
    np.testing.assert_allclose(scores[0], [0.9, 0.8], atol=1e-6)
    _, scores, _ = run_filter(
        [[[0, 0, 10, 10], [0, 0, 10, 5.01]]], classification, max_detections=2
    )
    np.testing.assert_allclose(scores[0], [0.9, -1], atol=1e-6)


def test_suppressed_box_does_not_suppress():
    # A chain: A (0.9) suppresses B (0.8), B would suppress C (0.7), but A and C overlap by
    # only IoU 0.25 / ... < 0.5, so greedy NMS keeps A and C.
    #   A = [0, 0, 10, 10], B = [3, 0, 13, 10] (IoU 70 / 130 = 0.54 with A),
    #   C = [6, 0, 16, 10] (IoU 70 / 130 with B, 40 / 160 = 0.25 with A).
    boxes = [[[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10]]]
    _, scores, _ = run_filter(boxes, [[[0.9], [0.8], [0.7]]], max_detections=3)
    np.testing.assert_allclose(scores[0], [0.9, 0.7, -1], atol=1e-6)


def test_greedy_nms_mask_directly():
    boxes = np.array([[[0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10], [0, 0, 10, 10]]], "float32")
    valid = np.array([[True, True, True, False]])
    keep = to_numpy(greedy_nms_mask(boxes, valid, None, 0.5))
    # The invalid duplicate of A is neither kept nor suppressing.
    np.testing.assert_array_equal(keep, [[True, False, True, False]])
    labels = np.array([[0, 1, 0, 0]], dtype="int32")
    # With labels, B (class 1) is alone in its class and kept; C is checked against A only.
    np.testing.assert_array_equal(
        to_numpy(greedy_nms_mask(boxes, valid, labels, 0.5)), [[1, 1, 1, 0]]
    )


def test_nms_false_keeps_overlaps():
    boxes = [[[0, 0, 10, 10], [1, 0, 11, 10]]]
    _, scores, _ = run_filter(boxes, [[[0.9], [0.8]]], nms=False, max_detections=3)
    np.testing.assert_allclose(scores[0], [0.9, 0.8, -1], atol=1e-6)


def test_max_detections_truncates_to_the_best():
    boxes = [[[i * 20, 0, i * 20 + 10, 10] for i in range(5)]]
    classification = [[[0.1], [0.5], [0.3], [0.9], [0.7]]]
    out_boxes, scores, _ = run_filter(boxes, classification, max_detections=2)
    np.testing.assert_allclose(scores[0], [0.9, 0.7], atol=1e-6)
    np.testing.assert_array_equal(out_boxes[0, :, 0], [60, 80])


def test_batch_images_are_independent():
    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 2, 40)
    classification = rng.uniform(size=(2, 40, 3)).astype(np.float32)
    classification[1] *= 0.5  # different contents in the second image
    batched = run_filter(boxes, classification, max_detections=20)
    for b in range(2):
        single = run_filter(boxes[b : b + 1], classification[b : b + 1], max_detections=20)
        for got, want in zip(batched, single):
            np.testing.assert_allclose(got[b], want[0], atol=1e-6)
    assert not np.allclose(batched[1][0], batched[1][1])


def test_invalid_arguments():
    with pytest.raises(ValueError, match="max_detections"):
        FilterDetections(max_detections=0)
    with pytest.raises(ValueError, match="pre_nms_top_k"):
        FilterDetections(pre_nms_top_k=0)


# --------------------------------------------------------------------------- NumPy reference


def random_boxes(rng, batch, count, size=100.0):
    """(batch, count, 4) boxes of 10..40 pixels in a size x size image: many overlaps."""
    xy = rng.uniform(0, size, size=(batch, count, 2))
    wh = rng.uniform(10, 40, size=(batch, count, 2))
    return np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)


def greedy_nms_reference(boxes, scores, iou_threshold):
    """Indices kept by textbook greedy NMS: take the best, drop IoU > threshold, repeat."""
    order = list(np.argsort(-scores, kind="stable"))
    kept = []
    while order:
        best = order.pop(0)
        kept.append(best)
        if order:
            iou = compute_overlap(boxes[[best]], boxes[order])[0]
            order = [i for i, v in zip(order, iou) if v <= iou_threshold]
    return kept


def filter_reference(boxes, classification, class_specific, nms_threshold, score_threshold, top):
    """One image: (boxes (D, 4), scores (D,), labels (D,)) sorted by score, at most `top`."""
    found = []  # (score, label, anchor)
    if class_specific:
        for label in range(classification.shape[1]):
            candidates = np.nonzero(classification[:, label] > score_threshold)[0]
            scores = classification[candidates, label]
            for k in greedy_nms_reference(boxes[candidates], scores, nms_threshold):
                found.append((scores[k], label, candidates[k]))
    else:
        best_label = classification.argmax(axis=1)
        best_score = classification.max(axis=1)
        candidates = np.nonzero(best_score > score_threshold)[0]
        scores = best_score[candidates]
        for k in greedy_nms_reference(boxes[candidates], scores, nms_threshold):
            found.append((scores[k], best_label[candidates[k]], candidates[k]))
    found.sort(key=lambda item: -item[0])
    found = found[:top]
    return (
        np.array([boxes[a] for _, _, a in found], dtype=np.float32).reshape(-1, 4),
        np.array([s for s, _, _ in found], dtype=np.float32),
        np.array([c for _, c, _ in found], dtype=np.int32),
    )


@pytest.mark.parametrize("class_specific", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_detections_matches_numpy_reference(class_specific, seed):
    rng = np.random.default_rng(seed)
    num_anchors, num_classes, max_detections = 80, 4, 300
    boxes = random_boxes(rng, 2, num_anchors)
    classification = rng.uniform(size=(2, num_anchors, num_classes)).astype(np.float32)
    # 80 * 4 = 320 < pre_nms_top_k = 1000: the pre-selection is not binding.
    kwargs = dict(
        class_specific_filter=class_specific,
        nms_threshold=0.5,
        score_threshold=0.3,
        max_detections=max_detections,
    )
    outputs = run_filter(
        boxes, classification, pre_nms_top_k=1000, pre_nms_top_k_per_level=None, **kwargs
    )
    exhaustive = run_filter(
        boxes, classification, pre_nms_top_k=None, pre_nms_top_k_per_level=None, **kwargs
    )
    for got, want in zip(outputs, exhaustive):
        np.testing.assert_array_equal(got, want)

    out_boxes, scores, labels = outputs
    for b in range(2):
        ref_boxes, ref_scores, ref_labels = filter_reference(
            boxes[b], classification[b], class_specific, 0.5, 0.3, max_detections
        )
        count = len(ref_scores)
        assert 0 < count < max_detections  # the comparison covers the padding too
        # Some suppression happened, else the test would not test NMS.
        assert count < (classification[b] > 0.3).sum()
        np.testing.assert_allclose(scores[b, :count], ref_scores, atol=1e-6)
        np.testing.assert_array_equal(labels[b, :count], ref_labels)
        np.testing.assert_allclose(out_boxes[b, :count], ref_boxes, atol=1e-5)
        np.testing.assert_array_equal(scores[b, count:], -1)
        np.testing.assert_array_equal(labels[b, count:], -1)


def test_binding_pre_nms_top_k_only_considers_the_best_candidates():
    # Eight disjoint boxes, pre_nms_top_k 3: only the three best (anchor, class) pairs are
    # candidates, so exactly three detections come out.
    boxes = [[[i * 20, 0, i * 20 + 10, 10] for i in range(8)]]
    classification = [[[0.1 * (i + 1)] for i in range(8)]]
    _, scores, _ = run_filter(boxes, classification, pre_nms_top_k=3, max_detections=5)
    np.testing.assert_allclose(scores[0], [0.8, 0.7, 0.6, -1, -1], atol=1e-6)


# --------------------------------------------------------------------------- serialisation


LAYERS = [
    UpsampleLike(name="up"),
    Anchors(size=64, stride=16, ratios=[1.0, 2.0], scales=[1.0], name="anchors_1"),
    RegressBoxes(mean=[0.0, 0.1, 0.0, 0.0], std=[0.1, 0.1, 0.2, 0.2], name="boxes"),
    ClipBoxes(name="clip"),
    FilterDetections(
        nms=False,
        class_specific_filter=False,
        nms_threshold=0.4,
        score_threshold=0.2,
        max_detections=7,
        pre_nms_top_k=None,
        name="filter",
    ),
    NormalizeInput("tf", name="normalize_tf"),
    NormalizeInput("rgb", name="normalize_rgb"),
    ErfGelu(name="gelu"),
]


def test_erf_gelu_is_keras_exact_gelu():
    x = np.linspace(-6, 6, 241, dtype=np.float32).reshape(1, -1)
    expected = to_numpy(keras.activations.gelu(x, approximate=False))
    np.testing.assert_allclose(to_numpy(ErfGelu()(x)), expected, rtol=1e-6, atol=1e-6)
    assert np.abs(expected).max() > 5  # not zeros compared with zeros


@pytest.mark.parametrize("layer", LAYERS, ids=lambda layer: type(layer).__name__)
def test_layer_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    # And through Keras' registry, by the registered name alone.
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"keras_retinanet>{type(layer).__name__}"
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(layer) and restored.get_config() == config


def test_round_tripped_layers_compute_the_same():
    filter_layer = LAYERS[4]
    clone = FilterDetections.from_config(filter_layer.get_config())
    rng = np.random.default_rng(7)
    boxes = random_boxes(rng, 1, 20)
    classification = rng.uniform(size=(1, 20, 2)).astype(np.float32)
    for got, want in zip(clone([boxes, classification]), filter_layer([boxes, classification])):
        np.testing.assert_array_equal(to_numpy(got), to_numpy(want))
    anchors = Anchors.from_config(LAYERS[1].get_config())
    features = np.zeros((1, 2, 3, 1), np.float32)
    np.testing.assert_array_equal(to_numpy(anchors(features)), to_numpy(LAYERS[1](features)))
