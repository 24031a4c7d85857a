"""The detection snippet of the demo notebook and README runs as written.

Users copy this code, so it is run here verbatim (``exec`` of the exact text) inside the context
the demo gives it: a snapshot loaded for inference, class names from its metadata, and an image
read, preprocessed and resized for the network.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet import models
from keras_retinanet.preprocessing.image import preprocess_image, read_image_bgr, resize_image
from keras_retinanet.visualization import draw_caption, label_color

REPO = Path(__file__).resolve().parents[1]
RACCOON = DATA / "raccoon" / "JPEGImages"

SNIPPET = """\
boxes, scores, labels = prediction_model.predict_on_batch(np.expand_dims(image, axis=0))
for box, score, label in zip(boxes[0], scores[0], labels[0]):
    if score < 0.5:
        break
    color = label_color(label)
    b = box.astype(int)
    cv2.rectangle(image, (b[0], b[1]), (b[2], b[3]), color, 2, cv2.LINE_AA)
    caption = "{} {:.3f}".format(labels_to_names[label], score)
    draw_caption(image, b, caption)
"""

MAX_DETECTIONS = 4
# sigmoid(6) = 0.9975: with this bias on the classification head every anchor scores far
# above the snippet's 0.5, as a trained model does on its objects.
CONFIDENT_BIAS = 6.0


@pytest.fixture(scope="module")
def confident_model():
    """An untrained one-class training model whose classifier says "raccoon" everywhere."""
    model = models.retinanet_model(num_classes=1, weights=None)
    head = model.get_layer("classification_submodel").get_layer("pyramid_classification")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, np.full_like(bias, CONFIDENT_BIAS)])
    return model


@pytest.fixture(scope="module")
def snapshot(confident_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("snippet") / "raccoon.keras"
    models.save_model(confident_model, str(path), {"classes": ["raccoon"], "num_classes": 1})
    return path


def _network_image() -> np.ndarray:
    """The demo's context: read, preprocess, resize (small, for a fast test)."""
    if not RACCOON.is_dir():
        pytest.skip(missing_reason())
    image = read_image_bgr(str(RACCOON / "raccoon-1.jpg"))
    image = preprocess_image(image)
    image, scale = resize_image(image, min_side=96, max_side=128)
    return image


def _run_snippet(prediction_model, labels_to_names, image: np.ndarray) -> dict:
    namespace = {
        "np": np,
        "cv2": cv2,
        "label_color": label_color,
        "draw_caption": draw_caption,
        "prediction_model": prediction_model,
        "labels_to_names": labels_to_names,
        "image": image,
    }
    exec(compile(SNIPPET, "<README snippet>", "exec"), namespace)
    return namespace


def _check_drawn(before: np.ndarray, namespace: dict) -> None:
    image = namespace["image"]
    boxes, scores, labels = namespace["boxes"], namespace["scores"], namespace["labels"]
    assert labels.dtype == np.int32  # numpy ints index the class-name dict and list
    drawn = scores[0] >= 0.5
    assert drawn.sum() == MAX_DETECTIONS
    changed = np.any(image != before, axis=-1)
    assert changed.any()
    height, width = image.shape[:2]
    for box in boxes[0][drawn]:
        assert 0 <= box[0] <= box[2] <= width and 0 <= box[1] <= box[3] <= height
    # Outlines in the label's colour, which the preprocessed image did not hold anywhere.
    color = np.array(label_color(0), dtype=image.dtype)
    assert not (before == color).all(axis=-1).any()
    assert (image == color).all(axis=-1).sum() >= 4 * 4  # at least one box's 4 edges
    # Nothing was drawn far from every box: outlines, and captions just above them (shifted
    # left when they would leave the image; "raccoon 0.998" is about 110 px wide).
    near = np.zeros(changed.shape, dtype=bool)
    for x1, y1, x2, y2 in boxes[0][drawn].astype(int):
        near[max(y1 - 25, 0) : y2 + 3, max(min(x1, width - 120) - 3, 0) : x2 + 120] = True
    assert not (changed & ~near).any()


@pytest.mark.parametrize("source", ["retinanet_box", "load_model"])
def test_snippet_draws_detections(confident_model, snapshot, source):
    if source == "retinanet_box":
        prediction_model = models.retinanet_box(confident_model, max_detections=MAX_DETECTIONS)
    else:
        prediction_model = models.load_model(
            str(snapshot), convert=True, max_detections=MAX_DETECTIONS
        )
    # Class names from the snapshot, keyed by int label as the demo builds them.
    labels_to_names = dict(enumerate(models.read_metadata(str(snapshot))["classes"]))
    image = _network_image()
    before = image.copy()
    namespace = _run_snippet(prediction_model, labels_to_names, image)
    _check_drawn(before, namespace)
    assert namespace["caption"].startswith("raccoon 0.99")


def test_snippet_with_class_list_from_a_generator(confident_model):
    # A generator's ``classes`` is a list of names; numpy int32 labels index it too.
    prediction_model = models.retinanet_box(confident_model, max_detections=MAX_DETECTIONS)
    image = _network_image()
    before = image.copy()
    namespace = _run_snippet(prediction_model, ["raccoon"], image)
    _check_drawn(before, namespace)
    assert namespace["caption"].startswith("raccoon ")


def test_notebook_contains_the_snippet_verbatim():
    notebook = REPO / "notebooks" / "retinanet_demo.ipynb"
    if not notebook.is_file():
        pytest.skip("notebook not written yet")
    import nbformat

    cells = nbformat.read(str(notebook), as_version=4).cells
    assert any(SNIPPET.strip() in cell.source for cell in cells if cell.cell_type == "code")


def test_draw_caption_on_a_float_image_matches_uint8():
    # The snippet draws its captions on the float network input; the pixels are those a uint8
    # image gets, also for captions clamped into the image at its corners.
    as_uint8 = np.full((60, 90, 3), 100, dtype=np.uint8)
    as_float = as_uint8.astype(np.float32)
    for box in [(10, 30, 50, 50), (0, 0, 20, 20), (80, 55, 89, 59)]:
        draw_caption(as_uint8, box, "raccoon 0.9", (255, 0, 0))
        draw_caption(as_float, box, "raccoon 0.9", (255, 0, 0))
    assert (as_uint8 != 100).any()
    np.testing.assert_array_equal(as_float, as_uint8.astype(np.float32))
