"""The pre-NMS candidate selection of FilterDetections: global top-k and per-level top-k.

Where a budget is not binding, the fast paths must give exactly the detections of the
exhaustive path (every (anchor, class) pair a candidate). Where it binds, the per-level budget
must take the best of each level, as documented.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_retinanet import models
from keras_retinanet.model.anchors import AnchorParameters, feature_shape
from keras_retinanet.model.layers import FilterDetections


def to_numpy(x):
    return np.asarray(ops.convert_to_numpy(x))


def run_filter(boxes, classification, level_sizes=None, **kwargs):
    """FilterDetections on NumPy inputs, with one dummy (B, N_l, 4) tensor per level."""
    inputs = [np.asarray(boxes, np.float32), np.asarray(classification, np.float32)]
    for size in level_sizes or []:
        inputs.append(np.zeros((len(boxes), size, 4), np.float32))
    outputs = FilterDetections(**kwargs)(inputs)
    return tuple(to_numpy(o) for o in outputs)


def random_problem(seed, batch=2, level_sizes=(60, 30, 10), num_classes=4, size=100.0):
    """Boxes of 10..40 pixels in a size x size image (many overlaps) and uniform scores."""
    rng = np.random.default_rng(seed)
    count = sum(level_sizes)
    xy = rng.uniform(0, size, size=(batch, count, 2))
    wh = rng.uniform(10, 40, size=(batch, count, 2))
    boxes = np.concatenate([xy, xy + wh], axis=-1).astype(np.float32)
    classification = rng.uniform(size=(batch, count, num_classes)).astype(np.float32)
    return boxes, classification


def assert_same_detections(got, want):
    for got_part, want_part in zip(got, want):
        np.testing.assert_array_equal(got_part, want_part)


FILTER_KWARGS = dict(nms_threshold=0.5, score_threshold=0.6, max_detections=200)
# Every (anchor, class) pair a candidate; and one global selection (the per-level budget off).
EXHAUSTIVE = dict(pre_nms_top_k=None, pre_nms_top_k_per_level=None)
GLOBAL_ONLY = dict(pre_nms_top_k_per_level=None)


def candidates_above(classification, threshold, class_specific):
    """(B, N) count per anchor of the candidates that pass the threshold."""
    if class_specific:
        return (classification > threshold).sum(axis=2)
    return (classification.max(axis=2) > threshold).astype(int)


@pytest.mark.parametrize("class_specific", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_not_binding_budgets_equal_the_exhaustive_path(class_specific, seed):
    level_sizes = (60, 30, 10)
    boxes, classification = random_problem(seed, level_sizes=level_sizes)
    kwargs = dict(FILTER_KWARGS, class_specific_filter=class_specific)
    exhaustive = run_filter(boxes, classification, **EXHAUSTIVE, **kwargs)

    # The test means something only if NMS removed candidates and the output is neither
    # empty nor truncated by max_detections.
    above = candidates_above(classification, 0.6, class_specific)  # (B, N)
    found = (exhaustive[2] >= 0).sum(axis=1)
    assert np.all(found > 0) and np.all(found < 200)
    assert np.all(found < above.sum(axis=1))

    # The smallest budgets that are not binding: as many candidates as pass the threshold,
    # in the image, and in the fullest level. Both are below the candidates there are, so
    # top_k really drops candidates (the ones below the threshold).
    global_budget = int(above.sum(axis=1).max())
    starts = np.cumsum((0,) + level_sizes)
    per_level_counts = [above[:, a:b].sum(axis=1) for a, b in zip(starts[:-1], starts[1:])]
    level_budget = int(np.max(per_level_counts))
    per_anchor = classification.shape[2] if class_specific else 1
    assert global_budget < sum(level_sizes) * per_anchor
    assert level_budget < level_sizes[0] * per_anchor

    global_top_k = run_filter(
        boxes, classification, pre_nms_top_k=global_budget, **GLOBAL_ONLY, **kwargs
    )
    assert_same_detections(global_top_k, exhaustive)

    per_level = run_filter(
        boxes,
        classification,
        level_sizes,
        pre_nms_top_k=None,
        pre_nms_top_k_per_level=level_budget,
        **kwargs,
    )
    assert_same_detections(per_level, exhaustive)

    # Per-level, then a global cap, neither binding.
    both = run_filter(
        boxes,
        classification,
        level_sizes,
        pre_nms_top_k=global_budget,
        pre_nms_top_k_per_level=level_budget,
        **kwargs,
    )
    assert_same_detections(both, exhaustive)


@pytest.mark.parametrize("seed", [3, 4])
def test_per_level_with_a_smaller_global_budget_equals_the_global_top_k(seed):
    # The best 50 pairs of the image hold at most 50 of any level, so they are all among the
    # per-level top 50: the per-level step changes nothing, even though both budgets bind.
    level_sizes = (60, 30, 10)
    boxes, classification = random_problem(seed, level_sizes=level_sizes)
    global_only = run_filter(
        boxes, classification, pre_nms_top_k=50, **GLOBAL_ONLY, **FILTER_KWARGS
    )
    per_level = run_filter(
        boxes,
        classification,
        level_sizes,
        pre_nms_top_k=50,
        pre_nms_top_k_per_level=50,
        **FILTER_KWARGS,
    )
    assert_same_detections(per_level, global_only)
    exhaustive = run_filter(boxes, classification, **EXHAUSTIVE, **FILTER_KWARGS)
    # And the budget does bind here: fewer detections than without it.
    assert (global_only[2] >= 0).sum() < (exhaustive[2] >= 0).sum()


def disjoint_two_level_problem():
    """Level 0: six disjoint boxes scoring 0.9..0.4; level 1: three scoring 0.3..0.1."""
    boxes = [[[i * 20, 0, i * 20 + 10, 10] for i in range(9)]]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    classification = [[[s] for s in scores]]
    return np.asarray(boxes, np.float32), np.asarray(classification, np.float32), (6, 3)


def test_binding_per_level_budget_takes_the_best_of_each_level():
    boxes, classification, level_sizes = disjoint_two_level_problem()
    kwargs = dict(score_threshold=0.05, max_detections=6, pre_nms_top_k=None)
    out_boxes, scores, labels = run_filter(
        boxes, classification, level_sizes, pre_nms_top_k_per_level=2, **kwargs
    )
    # Two from level 0 (0.9, 0.8) and two from level 1 (0.3, 0.2), then -1 padding.
    np.testing.assert_allclose(scores[0], [0.9, 0.8, 0.3, 0.2, -1, -1], atol=1e-6)
    np.testing.assert_array_equal(labels[0], [0, 0, 0, 0, -1, -1])
    # Boxes come from the right anchors: 0, 1 of level 0 and 6, 7 (level 1's first two).
    np.testing.assert_allclose(out_boxes[0, :4, 0], [0, 20, 120, 140])

    # A global budget of 4 takes the image's best four instead, all from level 0.
    _, global_scores, _ = run_filter(
        boxes, classification, **GLOBAL_ONLY, **dict(kwargs, pre_nms_top_k=4)
    )
    np.testing.assert_allclose(global_scores[0], [0.9, 0.8, 0.7, 0.6, -1, -1], atol=1e-6)

    # Per level 2, then a global cap of 3: the best three of those four.
    _, capped, _ = run_filter(
        boxes,
        classification,
        level_sizes,
        pre_nms_top_k_per_level=2,
        **dict(kwargs, pre_nms_top_k=3),
    )
    np.testing.assert_allclose(capped[0], [0.9, 0.8, 0.3, -1, -1, -1], atol=1e-6)


def test_per_level_budget_larger_than_a_level():
    # Level 1 has 3 anchors, fewer than the budget of 5: its padding is never kept.
    boxes, classification, level_sizes = disjoint_two_level_problem()
    _, scores, labels = run_filter(
        boxes,
        classification,
        level_sizes,
        score_threshold=-0.5,  # even a -1 padding score would fail this threshold
        max_detections=12,
        pre_nms_top_k=None,
        pre_nms_top_k_per_level=5,
    )
    want = [0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.2, 0.1]
    np.testing.assert_allclose(scores[0, :8], want, atol=1e-6)
    np.testing.assert_array_equal(labels[0, 8:], -1)


def test_per_level_errors_name_the_fix():
    boxes, classification, level_sizes = disjoint_two_level_problem()
    with pytest.raises(ValueError, match="8 in all"):
        run_filter(boxes, classification, (6, 2), pre_nms_top_k_per_level=2)
    with pytest.raises(ValueError, match="pre_nms_top_k_per_level"):
        FilterDetections(pre_nms_top_k_per_level=0)


def test_without_level_inputs_the_image_is_one_level():
    # The per-level budget is the default; called with boxes and scores alone, the layer
    # takes the best 2 of the whole image, as one global selection of 2 does.
    boxes, classification, _ = disjoint_two_level_problem()
    kwargs = dict(score_threshold=0.05, max_detections=6)
    one_level = run_filter(boxes, classification, pre_nms_top_k_per_level=2, **kwargs)
    global_two = run_filter(boxes, classification, pre_nms_top_k=2, **GLOBAL_ONLY, **kwargs)
    assert_same_detections(one_level, global_two)
    np.testing.assert_allclose(one_level[1][0], [0.9, 0.8, -1, -1, -1, -1], atol=1e-6)


def test_per_level_is_the_default_and_keeps_other_levels_objects():
    # The review's case: 1000 near-duplicates of one object on P3, scored 0.99 .. 0.9, and
    # 200 separate objects on P4 scored 0.8 .. 0.6. One global top 1000 sees only the
    # duplicates (NMS leaves 1 detection); the default per-level budget (1000 per level, no
    # global cap) sees both levels and returns max_detections = 100, as the exhaustive path.
    rng = np.random.default_rng(0)
    duplicates = np.array([[0, 0, 50, 50]], np.float32) + rng.uniform(0, 1, (1000, 4))
    objects = np.array([[60 + 20 * (i % 40), 60 + 20 * (i // 40), 70 + 20 * (i % 40),
                         70 + 20 * (i // 40)] for i in range(200)], np.float32)  # fmt: skip
    boxes = np.concatenate([duplicates, objects])[None]
    scores = np.concatenate([np.linspace(0.99, 0.9, 1000), np.linspace(0.8, 0.6, 200)])
    classification = scores.astype(np.float32)[None, :, None]
    kwargs = dict(score_threshold=0.05, max_detections=100)
    default = run_filter(boxes, classification, (1000, 200), **kwargs)
    global_1000 = run_filter(boxes, classification, pre_nms_top_k=1000, **GLOBAL_ONLY, **kwargs)
    exhaustive = run_filter(boxes, classification, **EXHAUSTIVE, **kwargs)
    assert (global_1000[2] >= 0).sum() == 1
    assert (default[2] >= 0).sum() == (exhaustive[2] >= 0).sum() == 100
    assert_same_detections(default, exhaustive)
    layer = FilterDetections()
    assert (layer.pre_nms_top_k, layer.pre_nms_top_k_per_level) == (None, 1000)


def test_config_round_trip_and_old_configs():
    layer = FilterDetections(pre_nms_top_k=None, pre_nms_top_k_per_level=1000, name="f")
    config = layer.get_config()
    assert config["pre_nms_top_k_per_level"] == 1000
    assert FilterDetections.from_config(config).get_config() == config
    # A config saved before the per-level option loads with one global selection.
    del config["pre_nms_top_k_per_level"]
    assert FilterDetections.from_config(config).pre_nms_top_k_per_level is None


# --------------------------------------------------------------------------- retinanet_box

IMAGE_SIDE = 64  # levels 8x8, 4x4, 2x2, 1x1, 1x1


@pytest.fixture(scope="module")
def training_model():
    # prior 0.5: every score starts near 0.5, so all candidates pass the threshold and the
    # selection, not the threshold, decides what comes out.
    return models.retinanet_model(2, weights=None, prior_probability=0.5)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.uniform(-100, 100, size=(1, IMAGE_SIDE, IMAGE_SIDE, 3)).astype(np.float32)


def test_retinanet_box_per_level_not_binding_equals_exhaustive(training_model, image):
    common = dict(score_threshold=0.05, max_detections=50)
    exhaustive = models.retinanet_box(training_model, **EXHAUSTIVE, **common)
    per_level = models.retinanet_box(
        training_model, pre_nms_top_k=None, pre_nms_top_k_per_level=2000, **common
    )
    want = exhaustive.predict_on_batch(image)
    got = per_level.predict_on_batch(image)
    assert (want[2] >= 0).sum() == 50  # enough detections to compare
    assert_same_detections(got, want)


def test_retinanet_box_binding_per_level_takes_each_levels_best(training_model, image):
    # One candidate per level and no NMS: the output is the best (anchor, class) score of
    # each of the five levels, sorted, which we compute from the training model's output.
    prediction_model = models.retinanet_box(
        training_model, nms=False, pre_nms_top_k=None, pre_nms_top_k_per_level=1, max_detections=8
    )
    _, classification = training_model.predict_on_batch(image)
    params = AnchorParameters()
    level_counts = [
        int(np.prod(feature_shape((IMAGE_SIDE, IMAGE_SIDE), stride))) * params.num_anchors
        for stride in params.strides
    ]
    assert sum(level_counts) == classification.shape[1]
    starts = np.cumsum([0] + level_counts)
    best = sorted(
        (classification[0, a:b].max() for a, b in zip(starts[:-1], starts[1:])), reverse=True
    )
    _, scores, labels = prediction_model.predict_on_batch(image)
    np.testing.assert_allclose(scores[0, :5], best, atol=1e-6)
    np.testing.assert_array_equal(labels[0, 5:], -1)


def test_retinanet_box_jit_compile_option(training_model):
    assert models.retinanet_box(training_model, jit_compile=False).jit_compile is False
    if keras.backend.backend() != "torch":
        assert models.retinanet_box(training_model, jit_compile=True).jit_compile is True


def test_per_level_inference_model_saves_and_loads(training_model, image, tmp_path):
    # The level inputs are part of the saved graph: the loaded model selects per level too.
    prediction_model = models.retinanet_box(
        training_model, nms=False, pre_nms_top_k=None, pre_nms_top_k_per_level=1, max_detections=8
    )
    path = models.save_model(prediction_model, str(tmp_path / "per_level.keras"))
    loaded = keras.saving.load_model(path, compile=False)
    layer = loaded.get_layer("filtered_detections")
    assert layer.pre_nms_top_k_per_level == 1
    assert_same_detections(loaded.predict_on_batch(image), prediction_model.predict_on_batch(image))
