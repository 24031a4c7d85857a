"""Tests for keras_retinanet.models and backbones: shapes, prior initialisation, the inference
graph agreeing with the loader's anchors and the training outputs, saving and loading in both
formats, metadata, atomic saves and backbone weights.

One small training model (3 classes, weights=None) is shared by the module; images are 96 x 128.
"""

import os

import h5py
import keras
import numpy as np
import pytest

from keras_retinanet import models
from keras_retinanet.model.anchors import AnchorParameters, anchors_for_shape, num_anchors_for_shape
from keras_retinanet.model.backbones import resolve_weights
from keras_retinanet.model.boxes import bbox_transform_inv, clip_boxes

NUM_CLASSES = 3
HEIGHT, WIDTH = 96, 128

# Same number of anchors per location as the defaults (so the same heads fit), other sizes: a
# converted snapshot must pick these up from its metadata.
SNAPSHOT_ANCHORS = AnchorParameters(sizes=(24, 48, 96, 192, 384))
METADATA = {
    "format_version": 1,
    "epoch": 3,
    "classes": ["rectangle", "ellipse", "triangle"],
    "num_classes": NUM_CLASSES,
    "backbone": "resnet50",
    "anchor_parameters": SNAPSHOT_ANCHORS.to_dict(),
    "image_min_side": HEIGHT,
    "image_max_side": WIDTH,
    "dataset": {"type": "voc", "data_dir": "/data/ünïcode", "train_set": "trainval"},
    "model": "training",
}


def outputs_as_numpy(outputs):
    return [np.asarray(keras.ops.convert_to_numpy(o)) for o in outputs]


@pytest.fixture(scope="module")
def training_model():
    return models.retinanet_model(NUM_CLASSES, weights=None)


@pytest.fixture(scope="module")
def inference_model(training_model):
    # Threshold 0: with the 0.01 prior no score passes the default 0.05, and a round trip of an
    # all -1 output would prove little.
    return models.retinanet_box(training_model, score_threshold=0.0, max_detections=20)


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    return rng.normal(0.0, 50.0, size=(1, HEIGHT, WIDTH, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def training_outputs(training_model, image):
    return outputs_as_numpy(training_model.predict_on_batch(image))


@pytest.fixture(scope="module")
def inference_outputs(inference_model, image):
    return outputs_as_numpy(inference_model.predict_on_batch(image))


@pytest.fixture(scope="module")
def snapshots(training_model, tmp_path_factory):
    """The training model saved with METADATA, as {".keras": path, ".h5": path}."""
    directory = tmp_path_factory.mktemp("snapshots")
    return {
        ext: models.save_model(training_model, str(directory / f"snapshot{ext}"), METADATA)
        for ext in (".keras", ".h5")
    }


# --------------------------------------------------------------------------- training model


def test_training_output_shapes(training_model, training_outputs):
    regression, classification = training_outputs
    # 96 x 128: (12*16 + 6*8 + 3*4 + 2*2 + 1*1) * 9 = (192 + 48 + 12 + 4 + 1) * 9 = 2313.
    n = num_anchors_for_shape((HEIGHT, WIDTH))
    assert n == 2313
    assert regression.shape == (1, n, 4) and regression.dtype == np.float32
    assert classification.shape == (1, n, NUM_CLASSES) and classification.dtype == np.float32
    assert list(training_model.output_names) == ["regression", "classification"]


def test_prior_initialisation(training_outputs):
    # Classification bias -log((1 - 0.01) / 0.01) with small kernels: every anchor starts near
    # foreground probability 0.01 even on a random image with a random backbone.
    classification = training_outputs[1]
    assert classification.mean() == pytest.approx(0.01, abs=0.003)
    assert 0.0 < classification.min() and classification.max() < 0.05


def test_parameter_count(training_model):
    # ResNet50 without top: 23,587,712 (25,636,712 with top minus the 2048 * 1000 + 1000 dense),
    # less the biases of its 53 convolutions, each folded into the BatchNormalization after it
    # (backbones.without_conv_bias): 64 + 1,408 + 3,584 + 10,240 + 11,264 = 26,560 (stem, then
    # stages 2-5: per block the filters of its three convs, plus the first block's shortcut),
    # leaving 23,561,152.
    # FPN: C5_reduced 2048*256+256 = 524,544; C4_reduced 1024*256+256 = 262,400;
    #   C3_reduced 512*256+256 = 131,328; P3, P4, P5, P7 3*3*256*256+256 = 590,080 each;
    #   P6 3*3*2048*256+256 = 4,718,848; total 7,997,440.
    # Regression head: 4 * 590,080 + (3*3*256*36 + 36 = 82,980) = 2,443,300.
    # Classification head: 4 * 590,080 + 3*3*256*27 + 27 (K*A = 3*9) = 2,360,320 + 62,235
    #   = 2,422,555.
    # 23,561,152 + 7,997,440 + 2,443,300 + 2,422,555 = 36,424,447.
    assert training_model.count_params() == 36_424_447
    convs = [layer for layer in training_model.layers if layer.name.startswith("conv")]
    assert sum(isinstance(layer, keras.layers.Conv2D) for layer in convs) == 53
    assert not any(getattr(layer, "use_bias", False) for layer in convs)


def test_resnet101_builds():
    model = models.retinanet_model(NUM_CLASSES, backbone="resnet101", weights=None)
    regression, classification = outputs_as_numpy(
        model.predict_on_batch(np.zeros((2, 64, 64, 3), np.float32))
    )
    # 64 x 64: (8*8 + 4*4 + 2*2 + 1 + 1) * 9 = 86 * 9 = 774.
    assert num_anchors_for_shape((64, 64)) == 774
    assert regression.shape == (2, 774, 4) and classification.shape == (2, 774, NUM_CLASSES)
    assert model.get_layer("conv4_block23_out") is not None  # really the 101-layer ResNet


def test_invalid_model_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        models.retinanet_model(0, weights=None)
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'"):
        models.retinanet_model(NUM_CLASSES, backbone="resnet18", weights=None)
    with pytest.raises(ValueError, match="pyramid levels"):
        models.retinanet_model(
            NUM_CLASSES,
            weights=None,
            anchor_parameters=AnchorParameters(sizes=(16, 32), strides=(4, 8)),
        )


# --------------------------------------------------------------------------- inference model


def test_inference_outputs(inference_model, inference_outputs):
    assert models.is_inference_model(inference_model)
    boxes, scores, labels = inference_outputs
    assert boxes.shape == (1, 20, 4) and boxes.dtype == np.float32
    assert scores.shape == (1, 20) and scores.dtype == np.float32
    assert labels.shape == (1, 20) and labels.dtype == np.int32
    found = scores[0] > -1
    assert found.all()  # threshold 0 with thousands of candidates: all 20 rows are filled
    assert (np.diff(scores[0]) <= 0).all()  # sorted, best first
    assert ((labels[0] >= 0) & (labels[0] < NUM_CLASSES)).all()
    # Clipped to the 128 x 96 input.
    assert (boxes[0, :, [0, 2]] >= 0).all() and (boxes[0, :, [0, 2]] <= WIDTH).all()
    assert (boxes[0, :, [1, 3]] >= 0).all() and (boxes[0, :, [1, 3]] <= HEIGHT).all()


def test_inference_agrees_with_training_outputs(inference_outputs, training_outputs):
    """The best detection is the best (anchor, class) of the training outputs, decoded against
    the loader's anchors and clipped."""
    regression, classification = training_outputs
    boxes, scores, labels = inference_outputs
    decoded = bbox_transform_inv(anchors_for_shape((HEIGHT, WIDTH)), regression[0])
    decoded = clip_boxes(decoded, HEIGHT, WIDTH)
    assert scores[0, 0] == pytest.approx(classification.max(), abs=1e-5)
    # Among the (anchor, class) pairs with that score, one has the detection's label and box.
    anchor_idx, class_idx = np.nonzero(np.abs(classification[0] - scores[0, 0]) < 1e-5)
    matches = [
        a
        for a, c in zip(anchor_idx, class_idx)
        if c == labels[0, 0] and np.allclose(decoded[a], boxes[0, 0], atol=1e-3)
    ]
    assert matches


def test_inference_anchors_match_anchors_for_shape(inference_model):
    """The inference graph's anchors at an odd input size equal the data loader's anchors."""
    anchors_model = keras.Model(inference_model.inputs, inference_model.get_layer("anchors").output)
    anchors = outputs_as_numpy(
        [anchors_model.predict_on_batch(np.zeros((1, 100, 150, 3), "float32"))]
    )[0]
    expected = anchors_for_shape((100, 150))
    assert anchors.shape == (1, num_anchors_for_shape((100, 150)), 4) == (1,) + expected.shape
    np.testing.assert_allclose(anchors[0], expected, atol=1e-4)


def test_retinanet_box_rejects_mismatching_anchors(training_model, inference_model):
    with pytest.raises(ValueError, match="predicts 9 anchors per location.*gives? 2"):
        models.retinanet_box(
            training_model, anchor_parameters=AnchorParameters(ratios=(1.0,), scales=(1.0, 2.0))
        )
    with pytest.raises(ValueError, match="inference model"):
        models.retinanet_box(inference_model)
    assert not models.is_inference_model(training_model)


# --------------------------------------------------------------------------- save / load


def test_training_snapshot_round_trip(snapshots, training_outputs, image):
    for ext, path in snapshots.items():
        loaded = keras.saving.load_model(path)  # no custom_objects
        assert not models.is_inference_model(loaded), ext
        for got, want in zip(outputs_as_numpy(loaded.predict_on_batch(image)), training_outputs):
            np.testing.assert_allclose(got, want, atol=1e-5, err_msg=ext)


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_inference_model_round_trip(inference_model, inference_outputs, image, tmp_path, ext):
    path = models.save_model(inference_model, str(tmp_path / f"inference{ext}"))
    loaded = keras.saving.load_model(path)  # no custom_objects
    assert models.is_inference_model(loaded)
    filter_layer = loaded.get_layer("filtered_detections")
    assert filter_layer.max_detections == 20 and filter_layer.score_threshold == 0.0
    got = outputs_as_numpy(loaded.predict_on_batch(image))
    for g, w in zip(got, inference_outputs):
        np.testing.assert_allclose(g, w, atol=1e-5)
    assert got[2].dtype == np.int32


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_metadata_round_trip(snapshots, ext):
    assert models.read_metadata(snapshots[ext]) == METADATA


def test_load_model_convert_uses_metadata_anchors(snapshots, training_outputs, image):
    model = models.load_model(snapshots[".h5"], convert=True, score_threshold=0.0, max_detections=7)
    assert models.is_inference_model(model)
    assert model.get_layer("anchors_0").size == 24  # from the metadata, not the default 32
    boxes, scores, labels = outputs_as_numpy(model.predict_on_batch(image))
    assert boxes.shape == (1, 7, 4) and scores.shape == (1, 7) and labels.dtype == np.int32
    # Its best detection decodes against the snapshot's anchors.
    regression, classification = training_outputs
    decoded = clip_boxes(
        bbox_transform_inv(anchors_for_shape((HEIGHT, WIDTH), SNAPSHOT_ANCHORS), regression[0]),
        HEIGHT,
        WIDTH,
    )
    anchor_idx, class_idx = np.nonzero(np.abs(classification[0] - scores[0, 0]) < 1e-5)
    assert any(
        c == labels[0, 0] and np.allclose(decoded[a], boxes[0, 0], atol=1e-3)
        for a, c in zip(anchor_idx, class_idx)
    )


def test_load_model_convert_keras_format_and_explicit_anchors(snapshots):
    model = models.load_model(
        snapshots[".keras"], convert=True, anchor_parameters=AnchorParameters()
    )
    assert models.is_inference_model(model)
    assert model.get_layer("anchors_0").size == 32  # explicit parameters win over metadata
    assert model.get_layer("filtered_detections").score_threshold == 0.05  # the default
    # Without convert, the training model comes back.
    assert not models.is_inference_model(models.load_model(snapshots[".keras"]))


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.keras"):
        models.load_model(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match=r"\.keras or \.h5"):
        models.load_model(str(tmp_path / "model.pb"))
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        models.read_metadata(str(tmp_path / "missing.h5"))


def test_compiled_snapshot_loads_after_importing_models_only(tmp_path):
    # A training snapshot is compiled with our losses; a fresh process that imports only
    # keras_retinanet.models must still find them (keras.saving.load_model compiles by default).
    import subprocess
    import sys

    from keras_retinanet.model import losses

    inputs = keras.Input((3,))
    model = keras.Model(
        inputs,
        [keras.layers.Dense(4, name="regression")(inputs),
         keras.layers.Dense(2, name="classification")(inputs)],
    )  # fmt: skip
    model.compile(
        optimizer="adam",
        loss={"regression": losses.smooth_l1(), "classification": losses.focal()},
    )
    path = models.save_model(model, str(tmp_path / "compiled.keras"))
    script = (
        "import sys, keras\n"
        "from keras_retinanet import models\n"
        "loaded = keras.saving.load_model(sys.argv[1])\n"
        "print(sorted(type(loss).__name__ for loss in loaded.loss.values()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, path], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['FocalLoss', 'SmoothL1Loss']" in result.stdout


def tiny_model(seed):
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name="dense")(inputs)
    model = keras.Model(inputs, outputs)
    model.get_layer("dense").set_weights(
        [np.full((3, 2), seed, np.float32), np.full((2,), -seed, np.float32)]
    )
    return model


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_save_model_is_atomic(tmp_path, monkeypatch, ext):
    path = str(tmp_path / f"model{ext}")
    models.save_model(tiny_model(1.0), path, {"epoch": 1})

    def broken_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"garbage, then the disk filled up")
        raise OSError("No space left on device")

    monkeypatch.setattr(keras.Model, "save", broken_save)
    with pytest.raises(OSError, match="No space left"):
        models.save_model(tiny_model(2.0), path, {"epoch": 2})
    monkeypatch.undo()

    # The previous file is intact and loadable, and no temporary file is left behind.
    assert os.listdir(tmp_path) == [f"model{ext}"]
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(loaded.get_layer("dense").get_weights()[0], 1.0)
    assert models.read_metadata(path) == {"epoch": 1}

    # A successful save replaces it, metadata included.
    models.save_model(tiny_model(2.0), path, {"epoch": 2})
    np.testing.assert_array_equal(
        keras.saving.load_model(path).get_layer("dense").get_weights()[0], 2.0
    )
    assert models.read_metadata(path) == {"epoch": 2}
    assert os.listdir(tmp_path) == [f"model{ext}"]


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_read_metadata_of_a_plain_keras_file_is_empty(tmp_path, ext):
    path = str(tmp_path / f"plain{ext}")
    tiny_model(1.0).save(path)
    assert models.read_metadata(path) == {}
    models.save_model(tiny_model(1.0), path)  # no metadata given: none written
    assert models.read_metadata(path) == {}


def test_save_model_rejects_other_extensions(tmp_path):
    with pytest.raises(ValueError, match=r"\.keras or \.h5"):
        models.save_model(tiny_model(1.0), str(tmp_path / "model.weights"))


# --------------------------------------------------------------------------- backbone weights


@pytest.fixture(scope="module")
def marked_resnet50_weights(tmp_path_factory):
    """A ResNet50 (no top) whose conv1_conv has known weights, saved as Keras 3 .weights.h5 and
    in the legacy .h5 layout that keras.applications downloads."""
    directory = tmp_path_factory.mktemp("weights")
    resnet = keras.applications.ResNet50(include_top=False, weights=None)
    layer = resnet.get_layer("conv1_conv")
    kernel_shape = layer.get_weights()[0].shape
    kernel = np.linspace(-1, 1, int(np.prod(kernel_shape)), dtype=np.float32).reshape(kernel_shape)
    bias = np.arange(64, dtype=np.float32) * 0.5
    layer.set_weights([kernel, bias])
    native = str(directory / "resnet50_notop.weights.h5")
    resnet.save_weights(native)
    legacy = str(directory / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    try:
        from keras.src.legacy.saving import legacy_h5_format
    except ImportError:  # pragma: no cover - a future Keras may move it
        legacy = None
    else:
        with h5py.File(legacy, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, resnet)
    return {"native": native, "legacy": legacy, "kernel": kernel, "bias": bias}


def test_missing_weights_file_names_the_path(tmp_path):
    path = str(tmp_path / "no_such_weights.h5")
    with pytest.raises(FileNotFoundError, match="no_such_weights.h5"):
        models.retinanet_model(NUM_CLASSES, weights=path)
    assert resolve_weights(None) is None and resolve_weights("None") is None
    assert resolve_weights("imagenet") == "imagenet"


@pytest.mark.parametrize("kind", ["native", "legacy"])
def test_local_weights_file_is_loaded(marked_resnet50_weights, kind):
    path = marked_resnet50_weights[kind]
    if path is None:
        pytest.skip("this Keras has no legacy .h5 weights writer")
    model = models.retinanet_model(NUM_CLASSES, weights=path)
    (kernel,) = model.get_layer("conv1_conv").get_weights()
    np.testing.assert_array_equal(kernel, marked_resnet50_weights["kernel"])
    # The file's conv bias is folded into the batch norm's moving mean (saved as zeros).
    moving_mean = model.get_layer("conv1_bn").moving_mean.numpy()
    np.testing.assert_allclose(moving_mean, -marked_resnet50_weights["bias"])


def test_backbone_without_conv_bias_computes_what_keras_applications_does(tmp_path):
    """Our C3..C5, built from a keras.applications weights file (conv biases and all), equal
    keras.applications' ResNet50 with that file, in inference and in training mode, although
    our convolutions have no bias (folded into the batch norms)."""
    from keras_retinanet.model.backbones import backbone_features

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)  # the same kernels on every run
    reference = keras.applications.ResNet50(include_top=False, weights=None)
    for layer in reference.layers:  # non-trivial biases and statistics everywhere
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 1.5, gamma.shape),
                               rng.normal(0, 0.1, beta.shape), rng.normal(0, 0.1, mean.shape),
                               variance * rng.uniform(0.5, 2.0, variance.shape)])  # fmt: skip
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
    path = str(tmp_path / "resnet50_notop.weights.h5")
    reference.save_weights(path)
    inputs = keras.Input((None, None, 3))
    ours = keras.Model(inputs, backbone_features(inputs, weights=path, freeze_batch_norm=False))
    taps = ["conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]
    tapped = keras.Model(reference.input, [reference.get_layer(t).output for t in taps])
    assert ours.count_params() == tapped.count_params() - 26_560
    assert not any(getattr(layer, "use_bias", False) for layer in ours.layers)
    images = rng.normal(0, 50, size=(2, 64, 96, 3)).astype("float32")
    for training in (False, True):
        expected = [np.asarray(v) for v in tapped(images, training=training)]
        got = [np.asarray(v) for v in ours(images, training=training)]
        for e, g in zip(expected, got):
            assert e.shape == g.shape
            # float32 rounding through ~50 layers, in two orders: one value in 24,576 once
            # came out 1.2e-4 of the largest away (unseeded kernels); seeded, 7.7e-5.
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=3e-4 * np.abs(e).max())


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_wrong_weights_file_raises_naming_it(tmp_path):
    path = str(tmp_path / "other_model.weights.h5")
    tiny_model(1.0).save_weights(path)
    with pytest.raises(ValueError, match="other_model.weights.h5"):
        models.retinanet_model(NUM_CLASSES, weights=path)


def test_imagenet_weights_use_keras_applications_download(marked_resnet50_weights, monkeypatch):
    """weights="imagenet": the package fetches the file keras.applications would fetch (the
    same name, address, hash and cache folder), so a failure can say why, and loads it into
    the backbone (no network here: the downloads are intercepted)."""
    if marked_resnet50_weights["legacy"] is None:
        pytest.skip("this Keras has no legacy .h5 weights writer")
    try:
        from keras.src.applications import resnet as keras_resnet
    except ImportError:  # pragma: no cover
        pytest.skip("keras.src.applications.resnet moved; cannot intercept the download")
    calls = []

    def fake_get_file(fname=None, origin=None, *args, **kwargs):
        calls.append({"fname": fname, "origin": origin, **kwargs})
        return marked_resnet50_weights["legacy"]

    monkeypatch.setattr(keras_resnet.file_utils, "get_file", fake_get_file)
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    model = models.retinanet_model(NUM_CLASSES, weights="imagenet")
    assert len(calls) == 1  # ours, with the registry's hash; the backbone loads that file
    keras.applications.ResNet50(include_top=False, weights="imagenet")  # what Keras asks for
    ours, applications = calls
    assert ours["fname"] == applications["fname"]
    assert ours["fname"] == "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert ours["origin"] == applications["origin"] and ours["origin"].startswith("https://")
    assert ours["origin"].endswith(ours["fname"])
    assert ours["cache_subdir"] == applications["cache_subdir"] == "models"
    assert ours["file_hash"] == applications["file_hash"]
    np.testing.assert_array_equal(
        model.get_layer("conv1_conv").get_weights()[0], marked_resnet50_weights["kernel"]
    )


# --------------------------------------------------------------------------- training


@pytest.mark.slow
def test_one_training_step_with_the_losses():
    """A compiled training step with focal and smooth L1 on loader targets runs and learns."""
    from keras_retinanet.model.losses import focal, smooth_l1
    from keras_retinanet.model.targets import anchor_targets_bbox

    model = models.retinanet_model(NUM_CLASSES, weights=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=[smooth_l1(), focal()])
    annotations = [{"bboxes": np.array([[20.0, 20.0, 60.0, 70.0]]), "labels": np.array([1])}]
    regression, labels = anchor_targets_bbox(
        anchors_for_shape((HEIGHT, WIDTH)), [(HEIGHT, WIDTH)], annotations, NUM_CLASSES
    )
    assert (labels[0, :, -1] == 1).any()
    x = np.random.default_rng(1).normal(0, 50, (1, HEIGHT, WIDTH, 3)).astype(np.float32)
    losses = [model.train_on_batch(x, [regression, labels])[0] for _ in range(3)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("variant", ["torchvision_v2"])  # GroupNorm heads, torch input, its anchors
def test_variant_models_build_predict_and_round_trip(variant, tmp_path):
    """Every backend: a variant's training and inference models, its anchors (those of the
    loader for its rule) and a .keras round trip with no custom_objects."""
    rule = models.get_variant(variant).anchor_rule
    model = models.retinanet_model(
        2,
        weights=None,
        variant=variant,
        pyramid_feature_size=64,
        classification_feature_size=64,
        regression_feature_size=64,
    )
    inference = models.retinanet_box(model, variant=variant, score_threshold=0.0)
    batch = np.random.default_rng(0).normal(0, 40, (1, 96, 160, 3)).astype("float32")
    anchors = keras.Model(inference.inputs, inference.get_layer("anchors").output)
    np.testing.assert_allclose(
        np.asarray(anchors.predict_on_batch(batch))[0], anchors_for_shape((96, 160), rule=rule)
    )
    boxes, scores, labels = inference.predict_on_batch(batch)
    assert np.asarray(boxes).shape == (1, 300, 4) and np.asarray(scores)[0, 0] > 0
    path = str(tmp_path / "variant.keras")
    models.save_model(model, path, metadata={"variant": models.get_variant(variant).to_dict()})
    loaded = models.load_model(path, convert=True, score_threshold=0.0)
    assert loaded.variant.name == variant
    np.testing.assert_allclose(
        np.asarray(loaded.predict_on_batch(batch)[1]), np.asarray(scores), atol=1e-5
    )


def test_a_variant_training_model_is_decoded_with_its_variant(tmp_path):
    # evaluate() turns a training model into an inference model (as_inference_model): a
    # torchvision model must be decoded with its own coder, anchors and clip, not ours,
    # whether it was built here or loaded from its snapshot.
    from keras_retinanet.model.retinanet import as_inference_model

    training = models.retinanet_model(3, variant="torchvision_v1", weights=None)
    path = str(tmp_path / "tv.keras")
    models.save_model(training, path, metadata={"variant": training.variant.to_dict()})
    for model in (training, models.load_model(path)):
        inference = as_inference_model(model)
        assert inference.variant.name == "torchvision_v1"
        assert inference.get_layer("boxes").coder == "centre_size"
        assert inference.get_layer("anchors_0").rule == "torchvision"
