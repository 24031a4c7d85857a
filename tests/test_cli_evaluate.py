"""End-to-end tests of retinanet-evaluate (keras_retinanet.cli.evaluate.main) on voc2007_sample.

The snapshot is an untrained 20-class model saved the way retinanet-train saves snapshots,
with its dataset record; ``--score-threshold 0`` keeps its low prior scores as detections, so
the drawing and report paths have something to work on. Metric values are tested elsewhere.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet import models
from keras_retinanet.cli import evaluate as evaluate_cli
from keras_retinanet.model.anchors import AnchorParameters

VOC2007 = DATA / "voc2007_sample"
RACCOON = DATA / "raccoon"
FAST = ["--score-threshold", "0", "--max-detections", "5", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not VOC2007.is_dir(), reason=missing_reason())


@pytest.fixture(scope="module")
def training_model(untrained_voc_model):
    return untrained_voc_model


@pytest.fixture(scope="module")
def snapshot(training_model, tmp_path_factory) -> Path:
    """A .keras training-model snapshot with the metadata retinanet-train records."""
    classes = (VOC2007 / "classes.txt").read_text().split()
    metadata = {
        "format_version": 1,
        "epoch": 1,
        "classes": classes,
        "num_classes": len(classes),
        "backbone": "resnet50",
        "anchor_parameters": AnchorParameters().to_dict(),
        "image_min_side": 96,
        "image_max_side": 128,
        "dataset": {
            "type": "voc",
            "data_dir": str(VOC2007),
            "train_set": "trainval",
            "val_set": "test",
            "classes": str(VOC2007 / "classes.txt"),
        },
        "model": "training",
    }
    path = tmp_path_factory.mktemp("snapshot") / "voc_01.keras"
    models.save_model(training_model, str(path), metadata)
    return path


def image_ids():
    return (VOC2007 / "ImageSets" / "Main" / "test.txt").read_text().split()


def table_rows(output):
    """{class name: (boxes, detections, ap text)} from the printed table."""
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[1].isdigit() and parts[2].isdigit():
            rows[parts[0]] = (int(parts[1]), int(parts[2]), parts[3])
    return rows


def test_parse_args_options_before_and_after_the_dataset():
    before = evaluate_cli.parse_args(["--score-threshold", "0.3", "voc", "d", "m.keras"])
    after = evaluate_cli.parse_args(["voc", "d", "m.keras", "--score-threshold", "0.3"])
    for args in (before, after):
        assert (args.dataset_type, args.data_dir, args.model) == ("voc", "d", "m.keras")
        assert args.score_threshold == 0.3
        assert args.set == "test" and args.max_detections == 100
    alone = evaluate_cli.parse_args(["--max-detections", "7", "m.keras", "--metric", "voc12"])
    assert alone.dataset_type is None and alone.model == "m.keras"
    assert alone.max_detections == 7 and alone.metric == "voc12"
    csv = evaluate_cli.parse_args(["csv", "a.csv", "c.csv", "m.h5"])
    assert (csv.annotations, csv.classes, csv.model) == ("a.csv", "c.csv", "m.h5")
    with pytest.raises(SystemExit):
        evaluate_cli.parse_args([])


def test_voc_subcommand_prints_table(snapshot, capsys):
    code = evaluate_cli.main(
        ["voc", str(VOC2007), str(snapshot), "--set", "test", "--metric", "voc12", *FAST]
    )
    assert code == 0
    output = capsys.readouterr().out
    rows = table_rows(output)
    assert len(rows) == 20
    # voc2007_sample: car 7, chair 6 with 2 difficult, dog/person/sofa/train 1 (data README).
    assert {name: r[0] for name, r in rows.items() if r[0]} == {
        "car": 7,
        "chair": 4,
        "dog": 1,
        "person": 1,
        "sofa": 1,
        "train": 1,
    }
    assert rows["cow"][2] == "-"  # no ground truth: no AP
    assert sum(r[1] for r in rows.values()) == 5 * 5  # 5 images x --max-detections 5
    assert "mAP@0.5 (voc12, 6 classes with ground truth):" in output
    assert "ms per image (5 images; first batch" in output
    # The untrained model's weak classes are named, with the command that tells why.
    low = [name for name, r in rows.items() if r[0] and float(r[2]) < 0.05]  # table order
    assert low
    (hint,) = [line for line in output.splitlines() if line.startswith("AP below 0.05:")]
    assert hint.split(": ", 1)[1].split(". ")[0].split(", ") == low
    assert f"--snapshot {snapshot} --scores" in hint


def test_snapshot_alone_uses_recorded_dataset_and_saves(snapshot, tmp_path, capsys):
    save_path = tmp_path / "out"
    code = evaluate_cli.main([str(snapshot), "--save-path", str(save_path), *FAST])
    assert code == 0
    output = capsys.readouterr().out
    assert "(voc07, 6 classes with ground truth)" in output

    report = json.loads((save_path / "report.json").read_text())
    assert report["model"] == str(snapshot.resolve())
    assert report["num_images"] == 5
    assert report["epoch"] == 1
    assert report["dataset"]["set_name"] == "test"  # the recorded val_set
    assert Path(report["dataset"]["data_dir"]).resolve() == VOC2007.resolve()
    # Image sizes come from the snapshot's metadata, not the 800/1333 defaults.
    assert report["settings"]["image_min_side"] == 96
    assert report["settings"]["image_max_side"] == 128
    assert len(report["classes"]) == 20
    with_truth = [c["name"] for c in report["classes"] if c["num_annotations"] > 0]
    assert sorted(with_truth) == ["car", "chair", "dog", "person", "sofa", "train"]
    assert 0.0 <= report["mAP"] <= 1.0

    plots = sorted((save_path / "precision_recall").glob("*.png"))
    assert [p.stem.split("_", 1)[1] for p in plots] == with_truth
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in plots)

    images = sorted((save_path / "images").glob("*.png"))
    assert [p.stem for p in images] == sorted(image_ids())
    for path in images:
        drawn = cv2.imread(str(path))
        original = cv2.imread(str(VOC2007 / "JPEGImages" / f"{path.stem}.jpg"))
        assert drawn.shape == original.shape
        # Ground truth is drawn in pure green (0, 255, 0), which no JPEG pixel is exactly.
        green = np.all(drawn == (0, 255, 0), axis=-1)
        assert green.sum() > np.all(original == (0, 255, 0), axis=-1).sum()


def test_plain_h5_inference_model(training_model, tmp_path, capsys):
    # An inference model in an .h5 file without metadata: the class names come from the
    # dataset and the image sizes from the command line.
    path = tmp_path / "inference.h5"
    inference = models.retinanet_box(training_model, score_threshold=0.0, max_detections=5)
    models.save_model(inference, str(path))
    assert models.read_metadata(str(path)) == {}
    code = evaluate_cli.main(
        [
            "voc",
            str(VOC2007),
            str(path),
            "--image-min-side",
            "96",
            "--image-max-side",
            "128",
            *FAST,
        ]
    )
    assert code == 0
    output = capsys.readouterr().out
    rows = table_rows(output)
    assert rows["car"][0] == 7
    # Not a training snapshot: the hint points to the one it came from.
    assert any(r[0] and float(r[2]) < 0.05 for r in rows.values())
    assert "A training snapshot of this model (as retinanet-train writes) tells why" in output
    assert "--snapshot SNAPSHOT --scores" in output

    # The same file alone: it records no dataset, so there is nothing to evaluate on.
    with pytest.raises(SystemExit) as error:
        evaluate_cli.main([str(path), *FAST])
    assert "records no dataset" in str(error.value.code)
    assert str(path) in str(error.value.code)


@pytest.mark.skipif(not RACCOON.is_dir(), reason=missing_reason())
def test_class_count_mismatch_is_a_clear_error(snapshot):
    # A 20-class snapshot on the 1-class raccoon set: stopped before the model is loaded.
    with pytest.raises(SystemExit) as error:
        evaluate_cli.main(
            ["voc", str(RACCOON), str(snapshot), "--classes", str(RACCOON / "classes.txt")]
        )
    message = str(error.value.code)
    assert "predicts 20 classes" in message
    assert "has 1 classes" in message
    assert str(snapshot) in message


def test_missing_model_file(tmp_path):
    missing = tmp_path / "nope.keras"
    with pytest.raises(SystemExit) as error:
        evaluate_cli.main([str(missing)])
    assert str(missing) in str(error.value.code)


def test_csv_subcommand_with_coco_metric(snapshot, tmp_path, capsys):
    # The same images and boxes as a CSV dataset, written from the VOC ground truth.
    from keras_retinanet.preprocessing.voc import PascalVocGenerator

    voc = PascalVocGenerator(str(VOC2007), "test", classes=str(VOC2007 / "classes.txt"))
    classes_csv = tmp_path / "classes.csv"
    classes_csv.write_text("".join(f"{name},{i}\n" for i, name in enumerate(voc.classes)))
    lines = []
    for i in range(voc.size()):
        annotations = voc.load_annotations(i)
        for box, label in zip(annotations["bboxes"], annotations["labels"]):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            lines.append(f"{voc.image_path(i)},{x1},{y1},{x2},{y2},{voc.classes[label]}\n")
    annotations_csv = tmp_path / "annotations.csv"
    annotations_csv.write_text("".join(lines))

    code = evaluate_cli.main(
        ["csv", str(annotations_csv), str(classes_csv), str(snapshot), "--metric", "coco", *FAST]
    )
    assert code == 0
    output = capsys.readouterr().out
    # No difficult flags in CSV files: all 6 chairs count.
    assert table_rows(output)["chair"][0] == 6
    assert "mAP (COCO AP@[.5:.95]):" in output
    assert "COCO AP50" in output


def test_default_metric_follows_the_dataset():
    from keras_retinanet.evaluation.inputs import default_metric

    assert default_metric({"type": "voc", "data_dir": str(DATA / "voc2012_sample")}) == "voc12"
    assert default_metric({"type": "voc", "data_dir": "/data/VOCdevkit/VOC2010/"}) == "voc12"
    assert default_metric({"type": "voc", "data_dir": str(VOC2007)}) == "voc07"
    assert default_metric({"type": "voc", "data_dir": "/data/VOC2009"}) == "voc07"
    assert default_metric({"type": "voc", "data_dir": str(RACCOON)}) == "voc07"
    assert default_metric({"type": "coco", "data_dir": "/data/coco"}) == "coco"
    assert default_metric({"type": "csv", "annotations": "a.csv"}) == "voc07"


def test_voc2012_data_is_scored_all_point_unless_told(snapshot, tmp_path, capsys):
    voc2012 = DATA / "voc2012_sample"
    common = ["voc", str(voc2012), str(snapshot), *FAST]
    evaluate_cli.main([*common, "--save-path", str(tmp_path / "default")])
    assert json.loads((tmp_path / "default" / "report.json").read_text())["metric"] == "voc12"
    evaluate_cli.main([*common, "--metric", "voc07", "--save-path", str(tmp_path / "told")])
    assert json.loads((tmp_path / "told" / "report.json").read_text())["metric"] == "voc07"
