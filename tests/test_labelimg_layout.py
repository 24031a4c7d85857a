"""Folders as labelling tools write them: one XML beside each image, or Annotations/ and
JPEGImages/ without ImageSets/, and no class list. Built in a temporary folder from raccoon."""

import json
import shutil
from pathlib import Path

import pytest
from heads import TINY_TRAIN_ARGS
from shared_data import DATA, missing_reason

from keras_retinanet import models
from keras_retinanet.cli import evaluate as evaluate_cli
from keras_retinanet.cli import predict as predict_cli
from keras_retinanet.cli import train as train_cli
from keras_retinanet.preprocessing import voc_layout
from keras_retinanet.preprocessing.voc import PascalVocGenerator

RACCOON = DATA / "raccoon"

pytestmark = pytest.mark.skipif(not RACCOON.is_dir(), reason=missing_reason())


def labelimg_copy(root: Path, count: int = 20, nested: bool = True) -> Path:
    """``count`` raccoon images with their XML beside each; half of them in a subfolder."""
    ids = sorted(p.stem for p in (RACCOON / "Annotations").glob("*.xml"))[:count]
    for k, image_id in enumerate(ids):
        folder = root / "batch2" if nested and k % 2 else root
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(RACCOON / "JPEGImages" / f"{image_id}.jpg", folder)
        shutil.copy(RACCOON / "Annotations" / f"{image_id}.xml", folder)
    return root


def test_flat_folder_is_indexed_split_and_named(tmp_path):
    root = labelimg_copy(tmp_path / "labelimg")
    layout = voc_layout.find_layout(root)
    assert layout.kind == "flat" and len(layout.annotations) == 20
    train = PascalVocGenerator(root, "trainval", shuffle=False)
    val = PascalVocGenerator(root, "test", shuffle=False)
    # Classes from the annotations (not the 20 VOC classes); a seeded 10 % split.
    assert train.classes == ["raccoon"] and train.classes_source == "annotations"
    assert (train.size(), val.size()) == (18, 2)
    assert not set(train.image_names) & set(val.image_names)
    assert PascalVocGenerator(root, "all").size() == 20
    # Every image is found beside its XML, in the subfolder too.
    assert all(Path(train.image_path(i)).is_file() for i in range(train.size()))
    assert any("batch2" in train.image_path(i) for i in range(train.size()))
    assert val.image_names == PascalVocGenerator(root, "val", shuffle=False).image_names
    with pytest.raises(ValueError, match="no ImageSets/Main"):
        PascalVocGenerator(root, "holdout")


def test_annotations_and_images_without_imagesets(tmp_path):
    root = tmp_path / "no_sets"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for xml in sorted((RACCOON / "Annotations").glob("*.xml"))[:10]:
        shutil.copy(xml, root / "Annotations")
        shutil.copy(RACCOON / "JPEGImages" / f"{xml.stem}.jpg", root / "JPEGImages")
    assert voc_layout.find_layout(root).kind == "no_sets"
    generator = PascalVocGenerator(root, "train", val_fraction=0.3)
    assert generator.size() == 7 and generator.classes == ["raccoon"]


def test_voc_names_keep_the_voc_labels(tmp_path):
    # Only VOC names in the annotations and no classes.txt: the 20 VOC classes, in VOC order.
    root = tmp_path / "voc_names"
    root.mkdir()
    for name in ("000001", "000004"):
        source = DATA / "voc2007_sample"
        shutil.copy(source / "Annotations" / f"{name}.xml", root)
        shutil.copy(source / "JPEGImages" / f"{name}.jpg", root)
    generator = PascalVocGenerator(root, "all")
    assert generator.classes_source == "voc" and len(generator.classes) == 20


def test_labelimg_folder_trains_evaluates_and_predicts(tmp_path, capsys):
    root = labelimg_copy(tmp_path / "labelimg")
    out = tmp_path / "snapshots"
    train_cli.main(TINY_TRAIN_ARGS + ["--steps", "1", "--epochs", "1", "--snapshot-path", str(out),
                            "voc", str(root)])  # fmt: skip
    printed = capsys.readouterr().out
    assert "classes read from the annotations" in printed and "raccoon" in printed
    assert "18 images for training, 2 for validation" in printed
    snapshot = out / "resnet50_voc_01.keras"
    metadata = models.read_metadata(str(snapshot))
    assert metadata["classes"] == ["raccoon"]
    assert metadata["dataset"]["classes"] == ["raccoon"]
    assert "mAP" in metadata["logs"]  # the held-out part was evaluated

    # Evaluate from the snapshot alone: the same held-out images.
    evaluate_cli.main([str(snapshot), "--quiet", "--save-path", str(tmp_path / "eval")])
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_images"] == 2 and report["classes"][0]["name"] == "raccoon"

    predict_cli.main([str(snapshot), str(root), "--output", str(tmp_path / "pred"),
                      "--score-threshold", "0", "--no-progress"])  # fmt: skip
    document = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert len(document["images"]) == 10  # the images directly in the folder
    assert document["classes"] == ["raccoon"]
    assert all(d["class"] == "raccoon" for i in document["images"] for d in i["detections"])
