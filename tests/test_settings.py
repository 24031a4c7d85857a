"""DetectionSettings, the one owner of what inference keeps: its rule for a score, its record
in converted files, and a threshold asked for being the one applied (or a clear error)."""

from __future__ import annotations

import numpy as np
import pytest
from heads import MAX_SIDE, MIN_SIDE, small_snapshot

from keras_retinanet import models
from keras_retinanet.export import convert_model
from keras_retinanet.inference import detect
from keras_retinanet.model.settings import (
    DetectionSettings,
    ThresholdError,
    check_threshold,
    keep_scores,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("settings")
    path, training, batch = small_snapshot(folder / "snapshot.keras")
    converted = str(folder / "converted.keras")
    convert_model(str(path), converted, score_threshold=0.3, max_detections=50)
    image = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    return str(path), converted, image


def test_defaults_and_their_record():
    settings = DetectionSettings()
    assert (settings.score_threshold, settings.nms_threshold) == (0.05, 0.5)  # Lin et al.
    assert DetectionSettings.from_dict(settings.to_dict()) == settings
    # A newer file's extra field is ignored; an older one's missing field takes the default.
    assert DetectionSettings.from_dict({"score_threshold": 0.2, "future": 1}).score_threshold == 0.2
    with pytest.raises(TypeError, match="unknown detection settings"):
        settings.replace(score_treshold=0.2)
    with pytest.raises(ValueError, match="score_threshold must be in"):
        DetectionSettings(score_threshold=1.5)
    assert settings.with_options(score_threshold=None, max_detections=7).max_detections == 7


def test_one_rule_for_a_score():
    # Strictly above, and never padding (-1), whatever the threshold.
    np.testing.assert_array_equal(
        keep_scores([0.5, 0.51, -1.0, 0.0], 0.5), [False, True, False, False]
    )
    np.testing.assert_array_equal(keep_scores([0.0, -1.0], -1.0), [True, False])
    check_threshold(0.3, 0.3)  # the same threshold is fine
    with pytest.raises(ThresholdError, match="retinanet-convert --score-threshold 0.1"):
        check_threshold(0.1, 0.3, "model.keras")


def test_settings_round_trip_through_a_converted_file(files):
    _, converted, _ = files
    recorded = models.read_metadata(converted)["detection_settings"]
    assert recorded["score_threshold"] == 0.3 and recorded["max_detections"] == 50
    model = models.load_model(converted)
    assert model.detection_settings == DetectionSettings.from_dict(recorded)
    config = model.get_layer("filtered_detections").get_config()
    assert (config["score_threshold"], config["max_detections"]) == (0.3, 50)


def test_a_training_snapshot_records_settings_that_conversion_uses(files, tmp_path):
    snapshot, _, image = files
    record = models.read_metadata(snapshot)
    record["detection_settings"] = DetectionSettings(score_threshold=0.4).to_dict()
    model = models.load_model(snapshot)
    path = str(tmp_path / "with_settings.keras")
    models.save_model(model, path, metadata=record)
    converted = models.load_model(path, convert=True)
    assert converted.get_layer("filtered_detections").get_config()["score_threshold"] == 0.4
    (found,) = detect(converted, [image], MIN_SIDE, MAX_SIDE)
    assert len(found) and found.scores.min() > 0.4


def test_the_threshold_asked_for_is_the_one_applied(files):
    snapshot, converted, image = files
    model = models.load_model(snapshot, convert=True, score_threshold=0.0)
    (everything,) = detect(model, [image], MIN_SIDE, MAX_SIDE)
    (above,) = detect(model, [image], MIN_SIDE, MAX_SIDE, score_threshold=0.5)
    assert len(above) > 0 and len(everything) > len(above)
    # Exactly the detections above 0.5 of the run that kept everything, no more, no less.
    np.testing.assert_array_equal(above.scores, everything.scores[everything.scores > 0.5])

    # A converted file keeps what its graph kept: above 0.3; asking for 0.6 filters further.
    inference = models.load_model(converted, score_threshold=0.6)
    (found,) = detect(inference, [image], MIN_SIDE, MAX_SIDE)
    assert found.scores.min() > 0.6


def test_a_lower_threshold_than_a_converted_graphs_is_an_error(files):
    _, converted, image = files
    with pytest.raises(ThresholdError, match="converted with score threshold 0.3"):
        models.load_model(converted, score_threshold=0.1)
    model = models.load_model(converted)
    with pytest.raises(ThresholdError, match="between 0.1 and 0.3"):
        detect(model, [image], MIN_SIDE, MAX_SIDE, score_threshold=0.1)
    with pytest.raises(ValueError, match="nms_threshold 0.5 \\(asked: 0.3\\)"):
        models.load_model(converted, nms_threshold=0.3)


def test_predict_cli_says_why_it_cannot_lower_a_converted_threshold(files, tmp_path, capsys):
    import cv2

    from keras_retinanet.cli import predict as predict_cli

    _, converted, image = files
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), image)
    argv = [converted, str(photo), "--output", str(tmp_path / "out"), "--no-progress"]
    assert predict_cli.main([*argv, "--score-threshold", "0.1"]) == 2
    assert "retinanet-convert --score-threshold 0.1" in capsys.readouterr().err


def test_an_inference_file_without_a_settings_record_converts_again(files, tmp_path):
    # Files converted before settings were recorded: their graph is the only record, and the
    # "auto" per-level budget is whatever the graph was built with.
    _, converted, image = files
    record = models.read_metadata(converted)
    del record["detection_settings"]
    old = str(tmp_path / "old_inference.keras")
    models.save_model(models.load_model(converted), old, metadata=record)
    again = str(tmp_path / "again.keras")
    convert_model(old, again)
    recorded = models.read_metadata(again)["detection_settings"]
    assert recorded["score_threshold"] == 0.3 and recorded["max_detections"] == 50
    assert recorded["pre_nms_top_k_per_level"] == 1000
    loaded = models.load_model(
        old, settings=DetectionSettings(score_threshold=0.4, max_detections=50)
    )
    assert loaded.detection_settings.pre_nms_top_k_per_level == 1000
