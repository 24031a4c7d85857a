"""Tests for keras_retinanet.evaluation.runner (evaluate, reports) and the Evaluate callback.

The metric maths is tested in test_evaluation_voc.py / test_evaluation_coco.py; these tests
check the plumbing on the shared voc2007_sample set (5 images, 6 classes present): images in,
detections rescaled to original pixels, per-class results, reports, and logs["mAP"].
"""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet.evaluation.callback import Evaluate
from keras_retinanet.evaluation.reports import (
    format_table,
    save_detection_images,
    save_precision_recall_plots,
    write_json_report,
)
from keras_retinanet.evaluation.runner import evaluate
from keras_retinanet.model import losses
from keras_retinanet.preprocessing.image import compute_resize_scale

VOC2007 = DATA / "voc2007_sample"
MIN_SIDE, MAX_SIDE = 96, 128  # tiny images keep the ResNet50 forward pass cheap

pytestmark = pytest.mark.skipif(not VOC2007.is_dir(), reason=missing_reason())


def voc_generator(set_name="test", **kwargs):
    from keras_retinanet.preprocessing.voc import PascalVocGenerator

    options = dict(
        image_min_side=MIN_SIDE, image_max_side=MAX_SIDE, shuffle=False, group_method="none"
    )
    options.update(kwargs)
    return PascalVocGenerator(str(VOC2007), set_name, **options)


@pytest.fixture(scope="module")
def generator():
    return voc_generator()


@pytest.fixture(scope="module")
def training_model(untrained_voc_model):
    return untrained_voc_model


def expected_counts(generator):
    """Non-difficult boxes per class, counted straight from the generator's annotations."""
    counts = np.zeros(generator.num_classes(), dtype=int)
    for i in range(generator.size()):
        annotations = generator.load_annotations(i)
        for label, difficult in zip(annotations["labels"], annotations["difficult"]):
            counts[label] += not difficult
    return counts


class GroundTruthModel:
    """A stand-in inference model that "detects" exactly the ground truth.

    It knows the images arrive in generator order and resizes the true boxes into the network
    input the way the resize does, so ``evaluate`` gets mAP 1.0 only if it maps them back to
    original pixels. ``rescale=False`` returns original-pixel boxes instead (a wrong model
    input scale), which must score badly. Decoys with a low score are added to every image to
    check ``max_detections`` and the ranking.
    """

    def __init__(self, generator, rescale=True, num_decoys=3, pad_to=20):
        self.generator = generator
        self.rescale = rescale
        self.num_decoys = num_decoys
        self.pad_to = pad_to
        self.next_index = 0
        self.batch_sizes = []

    def predict_on_batch(self, batch):
        batch_size = batch.shape[0]
        self.batch_sizes.append(batch_size)
        boxes = np.full((batch_size, self.pad_to, 4), -1.0, dtype=np.float32)
        scores = np.full((batch_size, self.pad_to), -1.0, dtype=np.float32)
        labels = np.full((batch_size, self.pad_to), -1, dtype=np.int32)
        for k in range(batch_size):
            index = self.next_index
            self.next_index += 1
            image_shape = self.generator.load_image(index).shape
            scale = compute_resize_scale(image_shape, MIN_SIDE, MAX_SIDE) if self.rescale else 1
            annotations = self.generator.load_annotations(index)
            true_boxes = annotations["bboxes"] * scale
            n = len(true_boxes)
            boxes[k, :n] = true_boxes
            scores[k, :n] = 0.9
            labels[k, :n] = annotations["labels"]
            # Decoys: a small box in the top-left corner of class 0 (absent from the set).
            for d in range(self.num_decoys):
                boxes[k, n + d] = [0, 0, 4, 4]
                scores[k, n + d] = 0.1 + 0.01 * d
                labels[k, n + d] = 0
        return boxes, scores, labels


# --------------------------------------------------------------------------- evaluate()


def test_evaluate_real_model_results_in_original_pixels(generator, training_model):
    # A training model is converted inside evaluate(); threshold 0 keeps the low prior scores.
    result = evaluate(generator, training_model, score_threshold=0.0, max_detections=15, verbose=0)
    counts = expected_counts(generator)
    assert len(result.classes) == 20
    assert [c.name for c in result.classes] == list(generator.classes)
    assert [c.num_annotations for c in result.classes] == counts.tolist()
    # car 7, chair 6 of which 2 difficult, dog, person, sofa, train 1 each (data README).
    assert {c.name for c in result.classes if c.num_annotations > 0} == {
        "car",
        "chair",
        "dog",
        "person",
        "sofa",
        "train",
    }
    assert all(0.0 <= c.average_precision <= 1.0 for c in result.classes)
    assert result.inference_time > 0 and result.first_batch_time > 0
    assert result.num_images == generator.size() == 5
    assert sum(c.num_detections for c in result.classes) == sum(len(d) for d in result.detections)
    for detections, (height, width), index in zip(
        result.detections, result.image_sizes, result.image_indices
    ):
        assert (height, width) == generator.load_image(index).shape[:2]
        assert 0 < len(detections) <= 15
        assert np.all(np.diff(detections.scores) <= 0)
        assert np.all(detections.boxes[:, [0, 2]] >= 0)
        assert np.all(detections.boxes[:, [0, 2]] <= width)
        assert np.all(detections.boxes[:, [1, 3]] >= 0)
        assert np.all(detections.boxes[:, [1, 3]] <= height)
        # Original pixels, not the 128-pixel network input: some box must reach past it.
    assert max(d.boxes.max() for d in result.detections) > MAX_SIDE

    # Batching pads images of different sizes together (to a multiple of 32, as training
    # does). Images 3 and 4 (96x118 and 96x128 at this size) pad to 96x128 alone and together,
    # so their detections are the same; images 0-2 (128x90, 128x86, 96x128) meet more padding
    # in their 128x128 batch, which moves the untrained model's scores by well under 1e-3.
    batched = evaluate(
        generator,
        training_model,
        score_threshold=0.0,
        max_detections=15,
        batch_size=3,
        verbose=0,
    )
    for index, (a, b) in enumerate(zip(result.detections, batched.detections)):
        assert len(a) == len(b)
        np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores), atol=1e-3)
        if index >= 3:
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


@pytest.mark.parametrize("metric", ["voc07", "voc12", "coco"])
def test_ground_truth_model_scores_one(generator, metric):
    if metric == "coco" and importlib.util.find_spec("pycocotools") is None:
        pytest.skip("pycocotools is not installed")
    model = GroundTruthModel(generator)
    result = evaluate(generator, model, batch_size=2, metric=metric, verbose=0)
    assert model.batch_sizes == [2, 2, 1]
    assert result.mean_average_precision == pytest.approx(1.0)
    for c in result.classes:
        if c.num_annotations > 0:
            assert c.average_precision == pytest.approx(1.0), c.name
    if metric == "coco":
        assert result.coco_metrics["AP50"] == pytest.approx(1.0)


def test_boxes_left_in_network_pixels_score_badly(generator):
    # The negative control of the test above: without the resize, every box is ~4x too big.
    result = evaluate(generator, GroundTruthModel(generator, rescale=False), verbose=0)
    assert result.mean_average_precision < 0.5


def test_max_detections_keeps_the_best(generator):
    # Every image has its true boxes at 0.9 and 3 decoys at 0.10-0.12.
    full = evaluate(generator, GroundTruthModel(generator), max_detections=100, verbose=0)
    capped = evaluate(generator, GroundTruthModel(generator), max_detections=2, verbose=0)
    for index, a, b in zip(full.image_indices, full.detections, capped.detections):
        num_true = len(generator.load_annotations(index)["bboxes"])
        assert len(a) == num_true + 3
        assert len(b) == min(2, len(a))
        np.testing.assert_array_equal(b.scores, a.scores[: len(b)])
    # A higher score threshold removes the decoys (scores 0.10, 0.11, 0.12).
    filtered = evaluate(generator, GroundTruthModel(generator), score_threshold=0.2, verbose=0)
    assert all(np.all(d.scores == pytest.approx(0.9)) for d in filtered.detections)


def test_bad_arguments(generator):
    with pytest.raises(ValueError, match="metric"):
        evaluate(generator, GroundTruthModel(generator), metric="voc2007", verbose=0)
    with pytest.raises(ValueError, match="max_detections"):
        evaluate(generator, GroundTruthModel(generator), max_detections=0, verbose=0)


def test_reports(generator, tmp_path):
    result = evaluate(generator, GroundTruthModel(generator), verbose=0)
    table = format_table(result)
    car_row = next(line for line in table.splitlines() if line.startswith("car "))
    assert car_row.split() == ["car", "7", "7", "1.0000"]
    assert "mAP@0.5 (voc07, 6 classes with ground truth): 1.0000" in table
    assert "ms per image (5 images; first batch" in table

    path = write_json_report(result, tmp_path / "r" / "report.json", extra={"model": "m.keras"})
    report = json.loads(Path(path).read_text())
    assert report["mAP"] == pytest.approx(1.0)
    assert report["model"] == "m.keras"
    assert report["settings"]["image_min_side"] == MIN_SIDE
    by_name = {c["name"]: c for c in report["classes"]}
    assert by_name["chair"]["num_annotations"] == 4
    assert by_name["cow"]["ap"] is None  # no ground truth: undefined, not 0

    plots = save_precision_recall_plots(result, tmp_path / "pr")
    assert len(plots) == 6
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)

    images = save_detection_images(generator, result, tmp_path / "images")
    assert sorted(Path(p).stem for p in images) == sorted(
        Path(generator.image_path(i)).stem for i in range(generator.size())
    )
    import cv2

    drawn = cv2.imread(images[0])
    original = generator.load_image(result.image_indices[0])
    assert drawn.shape == original.shape
    assert np.any(drawn != original)


# --------------------------------------------------------------------------- callback


def test_callback_every_second_epoch(generator, training_model):
    callback = Evaluate(generator, score_threshold=0.0, max_detections=5, every=2, verbose=0)
    callback.set_model(training_model)
    logs = {}
    callback.on_epoch_end(0, logs)
    assert "mAP" not in logs and callback.result is None
    callback.on_epoch_end(1, logs)
    assert 0.0 <= logs["mAP"] <= 1.0
    assert logs["mAP"] == callback.result.mean_average_precision
    assert callback.result.num_images == 5

    # The cached inference model shares the training model's weights: raising the
    # classification bias by 2 (prior logit -4.6 -> -2.6) must raise every score.
    before = np.concatenate([d.scores for d in callback.result.detections])
    head = training_model.get_layer("classification_submodel").get_layer("pyramid_classification")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias + 2.0])
    try:
        callback.on_epoch_end(3, logs)
    finally:
        head.set_weights([kernel, bias])
    after = np.concatenate([d.scores for d in callback.result.detections])
    assert after.min() > before.max()


def test_callback_sets_map_during_fit(generator, training_model, tmp_path):
    training_model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-5, clipnorm=0.001),
        loss={"regression": losses.smooth_l1(), "classification": losses.focal()},
        # Eager: tracing and optimising a ResNet50 train step takes over a minute on a busy
        # CPU, longer than the one eager step this test needs.
        run_eagerly=True,
    )
    # pad_multiple 128: every batch 128x128, as the TF data adapter keeps the first shape it sees.
    train = voc_generator("trainval", batch_size=1, seed=0, pad_multiple=128)
    seen = {}

    class Recorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen[epoch] = dict(logs)

    tensorboard_dir = tmp_path / "tb"
    evaluation = Evaluate(
        generator,
        score_threshold=0.0,
        max_detections=5,
        tensorboard_dir=tensorboard_dir,
        verbose=0,
    )
    history = training_model.fit(
        train, steps_per_epoch=1, epochs=1, callbacks=[evaluation, Recorder()], verbose=0
    )
    assert 0.0 <= seen[0]["mAP"] <= 1.0
    assert history.history["mAP"] == [seen[0]["mAP"]]
    if all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        assert list((tensorboard_dir / "evaluation").glob("events.out.tfevents.*"))
    else:
        assert not (tensorboard_dir / "evaluation").exists()
