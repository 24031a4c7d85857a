"""End-to-end tests of retinanet-train on the small real datasets in ../shared/data.

Every run uses random weights (no download), images of about 100 px and one or two steps, so
the tests check the plumbing (data -> model -> snapshots -> resume), not accuracy; learning is
measured by benchmarks/bench_train_shapes.py.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from heads import TINY_TRAIN_ARGS
from multi_device import assert_trained_and_refused_odd_batch, train_on_two_devices
from shared_data import DATA, missing_reason

from keras_retinanet import models
from keras_retinanet.cli import train as train_cli
from keras_retinanet.preprocessing.generator import Generator
from keras_retinanet.training import TrainingError

pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())


def _snapshots(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.keras") if "best" not in p.name)


def test_voc_one_step_writes_snapshot_log_and_plot(tmp_path):
    out = tmp_path / "snaps"
    train_cli.main(
        TINY_TRAIN_ARGS
        + ["--epochs", "1", "--steps", "1", "--snapshot-path", str(out), "--seed", "0"]
        + ["voc", str(DATA / "voc2007_sample")]
    )
    snapshots = _snapshots(out)
    assert [p.name for p in snapshots] == ["resnet50_voc_01.keras"]
    assert (out / "resnet50_voc_best.keras").is_file()
    metadata = models.read_metadata(str(snapshots[0]))
    assert metadata["epoch"] == 1
    assert metadata["num_classes"] == 20 and metadata["classes"][0] == "aeroplane"
    assert metadata["dataset"]["type"] == "voc"
    assert metadata["dataset"]["data_dir"] == str(DATA / "voc2007_sample")
    assert metadata["dataset"]["val_set"] == "test"
    assert metadata["metric"] == "voc07"  # VOC2007 data: 11-point AP, as published
    assert metadata["anchor_parameters"]["strides"] == [8, 16, 32, 64, 128]
    assert (metadata["image_min_side"], metadata["image_max_side"]) == (96, 128)
    # The validation set was evaluated, and mAP reached the logs, the CSV and the snapshot.
    assert "mAP" in metadata["logs"] and 0.0 <= metadata["logs"]["mAP"] <= 1.0
    with open(out / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and "mAP" in rows[0] and math.isfinite(float(rows[0]["loss"]))
    records = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert records[0]["epoch"] == 1 and "classification_loss" in records[0]
    assert (out / "training_log.png").stat().st_size > 5000


def test_csv_one_step(tmp_path):
    # A CSV dataset built from the raccoon images: two annotated images and one without
    # objects (path,,,,,).
    from lxml import etree

    lines = []
    ids = (DATA / "raccoon" / "ImageSets" / "Main" / "trainval.txt").read_text().split()[:3]
    for image_id in ids[:2]:
        root = etree.parse(str(DATA / "raccoon" / "Annotations" / f"{image_id}.xml")).getroot()
        for obj in root.findall("object"):
            box = obj.find("bndbox")
            coords = [box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
            lines.append(
                f"{DATA / 'raccoon' / 'JPEGImages' / image_id}.jpg,{','.join(coords)},raccoon"
            )
    lines.append(f"{DATA / 'raccoon' / 'JPEGImages' / ids[2]}.jpg,,,,,")
    annotations = tmp_path / "train.csv"
    annotations.write_text("\n".join(lines) + "\n")
    classes = tmp_path / "classes.csv"
    classes.write_text("raccoon,0\n")

    train_cli.main(
        TINY_TRAIN_ARGS
        + ["--epochs", "1", "--steps", "3", "--snapshot-path", str(tmp_path / "s")]
        + ["csv", str(annotations), str(classes)]
    )
    (snapshot,) = _snapshots(tmp_path / "s")
    metadata = models.read_metadata(str(snapshot))
    assert metadata["classes"] == ["raccoon"]
    assert metadata["dataset"] == {
        "type": "csv",
        "annotations": str(annotations),
        "classes": str(classes),
        "val_annotations": None,
    }
    model = keras.saving.load_model(str(snapshot))
    assert model.outputs[1].shape[-1] == 1  # one class

    # From random weights the snapshot's BatchNormalization statistics are the ones
    # re-estimated at the epoch's end over its 3 training batches (the 3 images, one per
    # batch), not the moving averages of 3 steps (which would be 27% of the batch means).
    from keras_retinanet.preprocessing.csv import CSVGenerator

    data = CSVGenerator(
        str(annotations), str(classes), image_min_side=96, image_max_side=128, shuffle=False
    )
    first = next(
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    )
    probe = keras.Model(model.input, first.input)
    channels = first.gamma.shape[0]
    means = [
        np.asarray(probe(data[i][0], training=True)).reshape(-1, channels).mean(0)
        for i in range(len(data))
    ]
    assert len(means) == 3
    np.testing.assert_allclose(first.moving_mean, np.mean(means, axis=0), rtol=1e-3, atol=1e-4)


def test_coco_one_step(tmp_path):
    # A COCO json written here, pointing at two bccd images (copied into the COCO layout).
    import shutil

    from lxml import etree

    images, annotations = [], []
    classes = ["Platelets", "RBC", "WBC"]
    (tmp_path / "train").mkdir()
    for image_id, name in enumerate(["BloodImage_00000", "BloodImage_00001"], start=1):
        shutil.copy(DATA / "bccd" / "JPEGImages" / f"{name}.jpg", tmp_path / "train")
        root = etree.parse(str(DATA / "bccd" / "Annotations" / f"{name}.xml")).getroot()
        size = root.find("size")
        images.append(
            {
                "id": image_id,
                "file_name": f"{name}.jpg",
                "width": int(size.findtext("width")),
                "height": int(size.findtext("height")),
            }
        )
        for obj in root.findall("object"):
            box = obj.find("bndbox")
            x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 <= x1 or y2 <= y1:
                continue
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": classes.index(obj.findtext("name")) + 1,
                    "bbox": [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1],
                    "area": (x2 - x1 + 1) * (y2 - y1 + 1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(classes)]
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    train_cli.main(
        TINY_TRAIN_ARGS
        + ["--epochs", "1", "--steps", "1", "--snapshot-path", str(tmp_path / "s")]
        + ["coco", str(tmp_path), "--train-set", "train", "--val-set", "train"]
    )
    (snapshot,) = _snapshots(tmp_path / "s")
    metadata = models.read_metadata(str(snapshot))
    # COCO data is evaluated with COCO AP (against its own json) in the training callback.
    assert metadata["metric"] == "coco" and "mAP" in metadata["logs"]
    assert metadata["dataset"]["type"] == "coco"


def test_resume_refuses_other_number_of_classes(tmp_path, capsys):
    # The check reads the snapshot's metadata before loading any weights, so a stand-in model
    # with the metadata of a 1-class (raccoon) training is enough.
    inputs = keras.Input((3,))
    stand_in = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    snapshot = models.save_model(
        stand_in, str(tmp_path / "resnet50_voc_01.keras"), {"epoch": 1, "num_classes": 1}
    )
    with pytest.raises(SystemExit):
        train_cli.main(
            TINY_TRAIN_ARGS
            + ["--epochs", "2", "--steps", "1", "--snapshot", snapshot]
            + ["voc", str(DATA / "bccd"), "--classes", str(DATA / "bccd" / "classes.txt")]
        )
    err = capsys.readouterr().err
    assert f"snapshot {snapshot} was trained for 1 classes but the dataset has 3" in err


def test_nan_loss_stops_and_keeps_last_good_snapshot(tmp_path, monkeypatch):
    original = Generator.compute_targets
    calls = {"n": 0}

    def poisoned(self, image_group, annotations_group):
        regression, classification = original(self, image_group, annotations_group)
        calls["n"] += 1
        if calls["n"] >= 3:  # epoch 1 has 2 steps; poison the first batch of epoch 2
            regression = regression.copy()
            regression[..., :4] = np.nan
            regression[..., 4] = np.where(regression[..., 4] == 0, 1, regression[..., 4])
        return regression, classification

    monkeypatch.setattr(Generator, "compute_targets", poisoned)
    out = tmp_path / "snaps"
    from keras_retinanet.training import TrainConfig, train

    config = TrainConfig(
        dataset={
            "type": "voc",
            "data_dir": str(DATA / "voc2007_sample"),
            "train_set": "trainval",
            "val_set": None,
            "classes": None,
        },
        weights=None,
        epochs=3,
        steps=2,
        image_min_side=96,
        image_max_side=128,
        snapshot_path=str(out),
        evaluation=False,
        verbose=0,
    )
    with pytest.raises(TrainingError, match="NaN") as excinfo:
        train(config)
    assert "resnet50_voc_01.keras" in str(excinfo.value)
    assert [p.name for p in _snapshots(out)] == ["resnet50_voc_01.keras"]
    model = keras.saving.load_model(str(out / "resnet50_voc_01.keras"))
    assert all(np.isfinite(w).all() for w in model.get_weights())


def test_kill_during_snapshot_write_keeps_previous(tmp_path):
    """SIGKILL a process while it is writing a snapshot over an existing one: the file at the
    snapshot path is still the previous, complete, loadable model."""
    path = tmp_path / "snapshot.keras"
    script = textwrap.dedent(
        f"""
        import keras, numpy as np
        from keras_retinanet import models
        layers = [keras.Input((64,)), keras.layers.Dense(4096), keras.layers.Dense(4096)]
        model = keras.Sequential(layers)
        bias = np.zeros(4096, "float32")
        model.layers[0].set_weights([np.full((64, 4096), 1.0, "float32"), bias])
        models.save_model(model, {str(path)!r}, {{"epoch": 1}})
        print("first", flush=True)
        model.layers[0].set_weights([np.full((64, 4096), 2.0, "float32"), bias])
        while True:
            models.save_model(model, {str(path)!r}, {{"epoch": 2}})
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert process.stdout.readline().strip() == b"first"
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".snapshot.keras.*")):  # a write is under way
            assert time.monotonic() < deadline, "no temporary snapshot file appeared"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    model = keras.saving.load_model(str(path))
    value = float(model.layers[0].get_weights()[0][0, 0])
    assert value in (1.0, 2.0)  # the old snapshot, or a complete new one, never a torn file
    assert models.read_metadata(str(path))["epoch"] == int(value)


TWO_LOGICAL_CPUS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
"""


def test_two_logical_devices_training_step(tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "snaps"
    # voc2007_sample has 5 trainval images: batches of 2, 2 and 1. Three steps reach the short
    # batch, which the training generator fills up so that each device gets one image (a
    # batch of 1 split over 2 devices used to fail in TF's MultiDeviceIterator and then hang
    # the process at exit).
    argv = TINY_TRAIN_ARGS + [
        "--multi-gpu", "2", "--batch-size", "2", "--epochs", "1", "--steps", "3",
        "--snapshot-path", str(out), "--no-evaluation",
        "voc", str(DATA / "voc2007_sample"), "--val-set", "none",
    ]  # fmt: skip
    result = train_on_two_devices(argv, {"KERAS_BACKEND": "tensorflow"}, TWO_LOGICAL_CPUS)
    assert_trained_and_refused_odd_batch(result)
    metadata = models.read_metadata(str(out / "resnet50_voc_01.keras"))
    assert math.isfinite(metadata["logs"]["loss"])
    model = keras.saving.load_model(str(out / "resnet50_voc_01.keras"))
    assert int(model.optimizer.iterations.numpy()) == 3


def test_multi_worker_without_a_cluster_is_a_clear_error(capsys, monkeypatch):
    # Two real workers train in tests/test_multi_worker.py; this checks the message only.
    pytest.importorskip("tensorflow")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(SystemExit):
        train_cli.main(TINY_TRAIN_ARGS + ["--distribute", "multi_worker", "voc", str(DATA / "bccd"),
                                "--classes", str(DATA / "bccd" / "classes.txt")])  # fmt: skip
    error = capsys.readouterr().err
    assert "--distribute multi_worker needs the cluster: pass --cluster" in error
    assert "or set TF_CONFIG" in error
    from keras_retinanet.training import distribution_scope

    with pytest.raises(TrainingError, match="'ring'; use mirrored, multi_worker or data_parallel"):
        distribution_scope("ring")


def test_csv_log_keeps_columns_aligned_when_a_resumed_run_logs_other_keys(tmp_path):
    from keras_retinanet.training import CSVLog
    from keras_retinanet.visualization import plot_training_log

    path = str(tmp_path / "training_log.csv")
    first = CSVLog(path)  # epochs 0-1 with evaluation
    first.on_train_begin()
    first.on_epoch_end(0, {"loss": 3.0, "mAP": 0.1, "regression_loss": 2.0})
    first.on_epoch_end(1, {"loss": 2.5, "mAP": 0.2, "regression_loss": 1.5})
    resumed = CSVLog(path, append=True)  # resumed without evaluation, with a learning rate
    resumed.on_train_begin()
    resumed.on_epoch_end(2, {"loss": 2.0, "regression_loss": 1.0, "learning_rate": 1e-5})
    resumed.on_epoch_end(3, {"loss": float("nan"), "regression_loss": 0.5, "note": "text"})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "mAP", "regression_loss", "learning_rate"]
    assert [row["loss"] for row in rows] == ["3.0", "2.5", "2.0", "nan"]
    assert [row["mAP"] for row in rows] == ["0.1", "0.2", "", ""]
    assert [row["regression_loss"] for row in rows] == ["2.0", "1.5", "1.0", "0.5"]
    assert [row["learning_rate"] for row in rows] == ["", "", "1e-05", ""]
    assert not [name for name in os.listdir(tmp_path) if ".tmp-" in name]
    assert os.path.isfile(plot_training_log(path, str(tmp_path / "log.png")))
    fresh = CSVLog(path)  # a new training (not resuming) starts a new log
    fresh.on_train_begin()
    fresh.on_epoch_end(0, {"loss": 9.0})
    with open(path, newline="") as f:
        assert list(csv.DictReader(f)) == [{"epoch": "0", "loss": "9.0"}]


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_cli.main(TINY_TRAIN_ARGS + ["voc", str(tmp_path / "missing")])
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.main(
            ["--weights", str(tmp_path / "nope.h5"), "voc", str(DATA / "bccd")]
            + ["--classes", str(DATA / "bccd" / "classes.txt")]
        )
    assert "nope.h5" in capsys.readouterr().err


def test_no_snapshots_flag_turns_snapshots_off():
    data = str(DATA / "voc2007_sample")
    args = train_cli.build_parser().parse_args(["--no-snapshots", "voc", data])
    assert train_cli.config_from_args(args).snapshot_path is None
    args = train_cli.build_parser().parse_args(["voc", data])
    assert train_cli.config_from_args(args).snapshot_path == "./snapshots"


def test_clipnorm_none_workers_zero_and_max_minutes_on_the_command_line(tmp_path, capsys):
    parse = train_cli.build_parser().parse_args
    data = ["voc", str(DATA / "voc2007_sample")]
    for text, expected in (("none", None), ("0", None), ("None", None), ("0.5", 0.5)):
        assert train_cli.config_from_args(parse(["--clipnorm", text, *data])).clipnorm == expected
    with pytest.raises(SystemExit):
        parse(["--clipnorm", "-1", *data])
    assert "0 / none for no clipping" in capsys.readouterr().err
    # One run with all three: no clipping in the saved optimizer, batches loaded one at a
    # time, and a time limit that ends the first epoch after its first step.
    out = tmp_path / "s"
    train_cli.main(
        TINY_TRAIN_ARGS
        + ["--clipnorm", "none", "--workers", "0", "--max-minutes", "0.0001", "--epochs", "3"]
        + ["--steps", "2", "--no-evaluation", "--snapshot-path", str(out), *data]
    )
    assert [p.name for p in _snapshots(out)] == ["resnet50_voc_01.keras"]
    model = keras.saving.load_model(str(out / "resnet50_voc_01.keras"), compile=True)
    assert model.optimizer.clipnorm is None
    assert int(model.optimizer.iterations.numpy()) == 1


def test_snapshots_keep_the_optimizer_only_where_a_resume_needs_it(tmp_path, capsys):
    out = tmp_path / "s"
    common = TINY_TRAIN_ARGS + ["--steps", "1", "--no-evaluation", "--snapshot-path", str(out)]
    dataset = ["voc", str(DATA / "voc2012_sample"), "--val-set", "none"]
    train_cli.main(common + ["--epochs", "3", "--keep-snapshots", "2", "--lr", "3e-5"] + dataset)
    kept = [p.name for p in _snapshots(out)]
    assert kept == ["resnet50_voc_02.keras", "resnet50_voc_03.keras"]  # the newest 2
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no leftovers
    newest, older, best = (out / n for n in (kept[1], kept[0], "resnet50_voc_best.keras"))
    # The newest is the resume point (3 optimizer steps); the older one and best hold the
    # weights alone, about a third of the size (Adam keeps two tensors per weight).
    newest_optimizer = keras.saving.load_model(str(newest), compile=True).optimizer
    assert int(newest_optimizer.iterations) == 3
    newest_lr = float(newest_optimizer.learning_rate.numpy())
    assert getattr(keras.saving.load_model(str(older), compile=True), "optimizer", None) is None
    for light in (older, best):
        assert light.stat().st_size < 0.45 * newest.stat().st_size
        assert models.read_metadata(str(light))["optimizer"] is False
    # best is a hard link to its epoch's weights file, not a second copy, while that file is
    # kept: epoch 2 here. Epoch 1 was pruned and epoch 3 stays complete (its twin is deleted),
    # so a best from either of those is the only copy left.
    best_epoch = models.read_metadata(str(best))["epoch"]
    assert (best.stat().st_nlink == 2) == (best_epoch == 2), best_epoch
    # An older snapshot still resumes, with a fresh optimizer (and says so).
    with pytest.warns(UserWarning, match="weights only"):
        train_cli.main(
            TINY_TRAIN_ARGS
            + ["--epochs", "3", "--steps", "1", "--no-evaluation", "--snapshot", str(older)]
            + ["--snapshot-path", str(tmp_path / "r"), "voc", str(DATA / "voc2012_sample")]
            + ["--val-set", "none"]
        )
    resumed = keras.saving.load_model(str(tmp_path / "r" / "resnet50_voc_03.keras"), compile=True)
    assert int(resumed.optimizer.iterations) == 1

    # The newest resumes where it stopped: epoch 4, the optimizer's 4th step, its learning
    # rate (3e-5, or lower where the plateau schedule cut it), and the training log appended.
    train_cli.main(common + ["--epochs", "4", "--snapshot", str(newest)] + dataset)
    fourth = out / "resnet50_voc_04.keras"
    assert models.read_metadata(str(fourth))["epoch"] == 4
    resumed = keras.saving.load_model(str(fourth), compile=True)
    assert int(resumed.optimizer.iterations) == 4
    assert 0 < newest_lr <= 3e-5
    # The plateau schedule (patience 2) may cut it by 10 at the end of epoch 4.
    assert float(resumed.optimizer.learning_rate.numpy()) in (
        pytest.approx(newest_lr),
        pytest.approx(newest_lr / 10),
    )
    with open(out / "training_log.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1, 2, 3]
    # Resuming a snapshot that is already at --epochs is a clear error, found from the
    # metadata before the model is loaded (so at once).
    capsys.readouterr()
    start = time.monotonic()
    with pytest.raises(SystemExit):
        train_cli.main(common + ["--epochs", "4", "--snapshot", str(fourth)] + dataset)
    assert "the snapshot already has 4 epochs and --epochs is 4" in capsys.readouterr().err
    assert time.monotonic() - start < 5

    # --lr on a resume replaces the snapshot's learning rate, and says so (it was ignored).
    capsys.readouterr()
    train_cli.main(common + ["--epochs", "5", "--lr", "7e-5", "--snapshot", str(fourth)] + dataset)
    said = capsys.readouterr().out
    fourth_lr = float(resumed.optimizer.learning_rate.numpy())  # after any cut in epoch 4
    assert f"--lr 7e-05 replaces the learning rate {fourth_lr:g}" in said, said[-2000:]
    fifth = keras.saving.load_model(str(out / "resnet50_voc_05.keras"), compile=True)
    # 7e-5, or a tenth of it if the plateau schedule cut it at the end of epoch 5.
    assert float(fifth.optimizer.learning_rate.numpy()) in (
        pytest.approx(7e-5),
        pytest.approx(7e-6),
    )
