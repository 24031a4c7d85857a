"""Fine-tuning a converted torchvision model on ../shared/data/raccoon (1 class): the model
starts from the source's weights, the class head starts afresh, the snapshot records it."""

from __future__ import annotations

import glob
import json
import os
import shutil
import sys

import cv2
import keras
import numpy as np
from shared_data import needs
from sources.common import RACCOON, SOURCES, raccoon_image, run, torch_python

from keras_retinanet import models
from keras_retinanet.cli import evaluate as evaluate_cli
from keras_retinanet.cli import export as export_cli
from keras_retinanet.cli import predict as predict_cli
from keras_retinanet.cli import train as train_cli
from keras_retinanet.convert import convert_torchvision, read_state_dict
from keras_retinanet.convert.common import conv_kernel, find_layer
from keras_retinanet.inference import detect
from keras_retinanet.model.layers import prior_bias

pytestmark = needs("raccoon")  # trains on the raccoon set


def test_fine_tune_converted_torchvision_model_on_raccoon(tmp_path):
    image_npy, _ = raccoon_image(tmp_path, 256, 320)
    out = tmp_path / "reference"
    run([torch_python(), os.path.join(SOURCES, "torchvision_reference.py"), image_npy, str(out)])
    source = str(tmp_path / "converted.keras")
    convert_torchvision(str(out / "model.pth"), source, arch="v1", bn_epsilon=1e-5)
    state = read_state_dict(out / "model.pth")
    lr, steps = 1e-5, 2
    code = train_cli.main(
        [
            "--weights", source, "--epochs", "1", "--steps", str(steps), "--lr", str(lr),
            "--image-min-side", "256", "--image-max-side", "320", "--no-evaluation",
            "--seed", "0", "--workers", "0", "--quiet",
            "--snapshot-path", str(tmp_path / "snapshots"),
            "voc", RACCOON,
        ]
    )  # fmt: skip
    assert code in (0, None)
    (snapshot,) = glob.glob(str(tmp_path / "snapshots" / "*_01.keras"))
    metadata = models.read_metadata(snapshot)
    assert metadata["variant"]["name"] == "torchvision_v1"
    assert metadata["classes"] == ["raccoon"]
    start = metadata["initial_weights"]
    assert start["path"] == os.path.abspath(source) and start["variant"] == "torchvision_v1"
    assert start["classification_reinitialised"] and start["source"]["from"] == "torchvision"

    # It trains as torchvision trains v1: L1 box loss and focal loss, each image normalised
    # by its own positives.
    from keras_retinanet.model.losses import FocalLoss, L1Loss

    losses = keras.saving.load_model(snapshot, compile=True).loss
    assert isinstance(losses["regression"], L1Loss)
    assert isinstance(losses["classification"], FocalLoss)
    assert {losses[k].normalisation for k in losses} == {"image"}

    tuned = models.load_model(snapshot)
    # Frozen BatchNorm: the source's statistics exactly (variance + eps 1e-5 - 1e-5).
    bn = find_layer(tuned, "layer3_2_bn2").get_weights()
    np.testing.assert_array_equal(bn[2], state["backbone.body.layer3.2.bn2.running_mean"])
    np.testing.assert_allclose(bn[3], state["backbone.body.layer3.2.bn2.running_var"], rtol=1e-6)
    # Trained layers moved at most Adam's step (about lr) per step from the source's values,
    # which differ from a fresh initialisation by orders of magnitude more.
    bound = steps * lr * 1.5
    for ours, key in (
        ("conv1", "backbone.body.conv1.weight"),
        ("layer4_2_conv3", "backbone.body.layer4.2.conv3.weight"),
        ("P4", "backbone.fpn.layer_blocks.1.0.weight"),
    ):
        kernel = find_layer(tuned, ours).get_weights()[0]
        expected = conv_kernel(state[key])
        assert np.abs(kernel - expected).max() <= bound, ours
        assert np.abs(expected).max() > 100 * bound
    # The class head: 9 anchors x 1 class, bias back at the 0.01 prior (not the source's).
    kernel, bias = find_layer(tuned, "pyramid_classification").get_weights()
    assert kernel.shape[-1] == 9
    np.testing.assert_allclose(bias, prior_bias(0.01), atol=bound)
    # The fine-tuned snapshot works with the other commands as any snapshot does: evaluated on
    # the held-out raccoon images (by the torchvision resize rule), predicted, exported.
    assert evaluate_cli.main(
        [snapshot, "--image-min-side", "256", "--image-max-side", "320", "--quiet",
         "--save-path", str(tmp_path / "eval")]
    ) in (0, None)  # fmt: skip
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_images"] == 40
    images = tmp_path / "photos"
    images.mkdir()
    shutil.copy(os.path.join(RACCOON, "JPEGImages", "raccoon-1.jpg"), images)
    assert predict_cli.main(
        [snapshot, str(images), "--output", str(tmp_path / "predicted"), "--no-progress",
         "--image-min-side", "256", "--image-max-side", "320", "--score-threshold", "0"]
    ) in (0, None)  # fmt: skip
    assert list((tmp_path / "predicted").glob("*.json"))
    exported = str(tmp_path / "detector")
    assert export_cli.main(
        [snapshot, exported, "--format", "saved_model", "--min-side", "256", "--max-side", "320"]
    ) in (0, None)  # fmt: skip
    import tensorflow as tf

    photo = cv2.imread(os.path.join(RACCOON, "JPEGImages", "raccoon-1.jpg"))
    serve = tf.saved_model.load(exported).signatures["serving_default"]
    outputs = serve(images=tf.constant(photo[None, ..., ::-1].copy()))
    (found,) = detect(models.load_model(snapshot, convert=True), [photo], 256, 320)
    count = int(outputs["num_detections"][0])
    assert count == len(found.scores) > 0
    np.testing.assert_allclose(outputs["scores"][0][:count], found.scores, atol=1e-3)


def test_fine_tuning_trains_with_the_variants_losses_and_a_fizyr_h5_as_weights(tmp_path, capsys):
    # A fizyr training .h5 given to --weights is converted on the way (one line says so), and
    # the run trains as fizyr did: its matcher and pad rule in the data, smooth L1 and focal
    # normalised over the batch in the compiled model.
    from sources.common import fizyr_path

    from keras_retinanet.model.losses import FocalLoss, SmoothL1Loss

    image_npy, _ = raccoon_image(tmp_path, 256, 320)
    out = tmp_path / "reference"
    run(
        [sys.executable, os.path.join(SOURCES, "fizyr_reference.py"), image_npy, str(out)],
        env={"PYTHONPATH": fizyr_path()},
    )
    code = train_cli.main(
        [
            "--weights", str(out / "model.h5"), "--epochs", "1", "--steps", "1",
            "--image-min-side", "96", "--image-max-side", "128", "--no-evaluation",
            "--seed", "0", "--workers", "0", "--quiet",
            "--snapshot-path", str(tmp_path / "snapshots"), "voc", RACCOON,
        ]
    )  # fmt: skip
    assert code in (0, None)
    assert "is a fizyr keras-retinanet snapshot" in capsys.readouterr().err
    (snapshot,) = glob.glob(str(tmp_path / "snapshots" / "*_01.keras"))
    metadata = models.read_metadata(snapshot)
    assert metadata["variant"]["name"] == "fizyr" and metadata["variant"]["matcher"] == "fizyr"
    losses = keras.saving.load_model(snapshot, compile=True).loss
    assert isinstance(losses["regression"], SmoothL1Loss)
    assert isinstance(losses["classification"], FocalLoss)
    assert {losses[k].normalisation for k in losses} == {"batch"}
