"""``retinanet-train --anchors auto`` (issue #26): on data whose objects no default anchor
covers it fits anchors, says so in one line, stores them in the snapshot, and that snapshot
evaluates, converts and exports with them (the detections depend on the anchors, and the
exported graph gives the converted model's)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from heads import spread_out_heads
from test_anchor_fit import small_objects_csv
from test_export import as_outputs, assert_same_detections, scene

from keras_retinanet import models
from keras_retinanet.cli import evaluate as evaluate_cli
from keras_retinanet.cli import export as export_cli
from keras_retinanet.cli import train as train_cli
from keras_retinanet.export import convert_model
from keras_retinanet.export.runtime import load_artifact
from keras_retinanet.inference import detect, prepare_batch
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.predict import predict
from keras_retinanet.preprocessing.anchor_fit import AUTO_FIT_SHARE
from keras_retinanet.training import TrainConfig
from keras_retinanet.training.inputs import auto_anchors

SIDES = ["--image-min-side", "128", "--image-max-side", "128"]


def test_auto_keeps_the_defaults_where_they_cover_the_boxes(tmp_path):
    # 60-90 px squares: the defaults cover them, so auto changes nothing and says why.
    annotations, classes = small_objects_csv(tmp_path, images=2)
    lines = annotations.read_text().splitlines()
    big = []
    for line in lines:
        path, x1, y1, _, _, name = line.split(",")
        big.append(f"{path},4,4,{4 + 70},{4 + 64},{name}")
    annotations.write_text("\n".join(big) + "\n")
    dataset = {"type": "csv", "annotations": str(annotations), "classes": str(classes)}
    config = TrainConfig(dataset=dataset, image_min_side=128, image_max_side=128)
    params, message = auto_anchors(config)
    assert params is None
    assert "defaults cover" in message and "every box has one" in message
    assert AUTO_FIT_SHARE == 0.1  # the share the README and --help state


def test_anchors_auto_snapshot_evaluates_converts_and_exports(tmp_path, capsys):
    annotations, classes = small_objects_csv(tmp_path)
    out = tmp_path / "snapshots"
    dataset = ["csv", str(annotations), str(classes), "--val-annotations", str(annotations)]
    train_cli.main(
        ["--weights", "none", *SIDES, "--epochs", "1", "--steps", "1", "--seed", "0"]
        + ["--snapshot-path", str(out), "--no-evaluation", *dataset]
    )
    printed = capsys.readouterr().out
    (line,) = [line for line in printed.splitlines() if line.startswith("anchors: fitted")]
    assert "100% of red had no anchor" in line and "--anchors default" in line
    (snapshot,) = sorted(p for p in out.glob("*.keras") if "best" not in p.name)
    metadata = models.read_metadata(str(snapshot))
    fitted = AnchorParameters.from_dict(metadata["anchor_parameters"])
    assert fitted != AnchorParameters() and min(fitted.sizes) < 24
    assert fitted.strides == AnchorParameters().strides and fitted.num_anchors == 9

    # --anchors default: the standard anchors, as before.
    train_cli.main(
        ["--weights", "none", *SIDES, "--epochs", "1", "--steps", "1", "--anchors", "default"]
        + ["--snapshot-path", str(tmp_path / "plain"), "--no-evaluation", "--quiet", *dataset]
    )
    (plain,) = sorted(p for p in (tmp_path / "plain").glob("*.keras") if "best" not in p.name)
    assert models.read_metadata(str(plain))["anchor_parameters"] == AnchorParameters().to_dict()

    # Confident heads on a test scene, so the detections depend on the anchors' positions.
    image = scene((128, 128))
    model = models.load_model(str(snapshot))
    batch, _ = prepare_batch([image], 128, 128)
    spread_out_heads(model, batch)
    confident = tmp_path / "confident.keras"
    models.save_model(model, str(confident), metadata=metadata)

    # Evaluates (the snapshot's anchors decode its outputs).
    assert evaluate_cli.main(["csv", str(annotations), str(classes), str(confident)]) == 0
    assert "mAP" in capsys.readouterr().out

    # Converts: the inference model decodes with the fitted anchors, not the defaults.
    converted = convert_model(str(confident), str(tmp_path / "inference.keras"),
                              score_threshold=0.3, max_detections=50)  # fmt: skip
    inference = models.load_model(converted)
    reference = detect(inference, [image], 128, 128)[0]
    assert len(reference) >= 3
    fitted_box = models.retinanet_box(model, anchor_parameters=fitted, score_threshold=0.3,
                                      max_detections=50)  # fmt: skip
    default_box = models.retinanet_box(model, anchor_parameters=AnchorParameters(),
                                       score_threshold=0.3, max_detections=50)  # fmt: skip
    assert_same_detections(reference, as_outputs(detect(fitted_box, [image], 128, 128)[0]))
    with pytest.raises(AssertionError):
        assert_same_detections(reference, as_outputs(detect(default_box, [image], 128, 128)[0]))

    # Exports: the SavedModel's detections are the converted model's.
    exported = tmp_path / "saved_model"
    assert export_cli.main([converted, str(exported), "--format", "saved_model"]) == 0
    artifact = load_artifact(str(exported))
    stored = json.loads((exported / "assets.extra" / "keras_retinanet.json").read_text())
    assert stored["anchor_parameters"] == fitted.to_dict()
    (found,) = artifact.detect_images([image])
    assert_same_detections(reference, as_outputs(found))
    assert np.isfinite(found.boxes).all()
    # The artifact tiles too (retinanet-predict --tile on an exported detector): one tile of
    # the whole image gives its detections again.
    photo = tmp_path / "scene.png"
    cv2.imwrite(str(photo), image)
    result = predict(str(exported), [str(photo)], None, score_threshold=0.3, tile=(128, 128),
                     progress=False)  # fmt: skip
    assert len(result.records[0]["detections"]) == len(reference)
    result = predict(str(exported), [str(photo)], None, score_threshold=0.3, tile=(64, 64),
                     tile_overlap=0.5, progress=False)  # fmt: skip
    boxes = np.array([d["box"] for d in result.records[0]["detections"]]).reshape(-1, 4)
    assert len(boxes) > 0 and (boxes >= 0).all() and (boxes <= 128).all()
