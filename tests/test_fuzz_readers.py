"""Property-based tests of every reader of user files: VOC XML, the CSV annotation and class
files, COCO JSON, the anchor configuration and images. Each generated file is either read
into well-formed values or rejected with the package's own error (``DataFileError`` for data
files, ``ImageReadError`` for images) naming the file; no other exception, no hang.

CI runs a bounded, derandomised number of examples per reader; set ``RETINANET_FUZZ_EXAMPLES``
(for example 2000) for more.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import tempfile
import warnings
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from keras_retinanet.model.anchor_config import read_anchor_parameters  # noqa: E402
from keras_retinanet.model.files import DataFileError  # noqa: E402
from keras_retinanet.preprocessing.csv import read_annotations_csv, read_classes_csv  # noqa: E402
from keras_retinanet.preprocessing.image import ImageReadError, read_image_bgr  # noqa: E402
from keras_retinanet.preprocessing.voc import read_voc_annotation  # noqa: E402

EXAMPLES = int(os.environ.get("RETINANET_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same inputs on every CI run
    deadline=timedelta(seconds=20),  # a hang fails the example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
CLASSES = {"cat": 0, "dog": 1}

# Text that is sometimes a number, sometimes nearly one, sometimes anything.
NUMBERS = st.one_of(
    st.integers(-50, 5000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-inf", "1e400", "0x10", "12px", "١٢", "1,5", "--1"]),
    st.text(max_size=6),
)
NAMES = st.one_of(st.sampled_from(["cat", "dog", " cat ", "Cat", "", "bird"]), st.text(max_size=8))


def _write(data: bytes | str, suffix: str) -> str:
    handle, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(handle, "wb") as f:
        f.write(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return path


def _rejected(error: Exception, path: str, kind: type) -> None:
    assert isinstance(error, kind), f"{type(error).__name__}: {error}"
    assert path in str(error), f"the message does not name the file: {error}"


def _read_or_reject(data: bytes | str, suffix: str, read, kind: type = DataFileError):
    """``read(path)`` of a file holding ``data``: its value, or None when it was rejected
    with ``kind`` naming the file (any other exception fails the test)."""
    path = _write(data, suffix)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return read(path)
    except Exception as error:  # noqa: BLE001
        _rejected(error, path, kind)
        return None
    finally:
        os.remove(path)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@st.composite
def voc_xml(draw) -> str | bytes:
    if draw(st.integers(0, 9)) == 0:  # anything at all
        return draw(st.one_of(st.binary(max_size=200), st.text(max_size=200)))
    objects = []
    for _ in range(draw(st.integers(0, 4))):
        fields = {k: draw(NUMBERS) for k in ("xmin", "ymin", "xmax", "ymax")}
        present = draw(st.lists(st.sampled_from(list(fields)), unique=True))
        box = "".join(f"<{k}>{_escape(fields[k])}</{k}>" for k in fields if k not in present[:1])
        parts = [f"<name>{_escape(draw(NAMES))}</name>"]
        if draw(st.booleans()):
            parts.append(f"<difficult>{_escape(draw(NUMBERS))}</difficult>")
        if draw(st.integers(0, 5)):
            parts.append(f"<bndbox>{box}</bndbox>")
        objects.append(f"<object>{''.join(parts)}</object>")
    text = f"<annotation><filename>a.jpg</filename>{''.join(objects)}</annotation>"
    if draw(st.integers(0, 6)) == 0:
        text = text[: draw(st.integers(0, len(text)))]  # cut short
    return text


@FUZZ
@given(document=voc_xml())
def test_voc_xml(document):
    read = _read_or_reject(document, ".xml", lambda path: read_voc_annotation(path, CLASSES))
    if read is None:
        return
    objects, _ = read
    boxes = objects["bboxes"]
    assert boxes.dtype == np.float32 and boxes.shape == (len(objects["labels"]), 4)
    assert np.isfinite(boxes).all(), boxes
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert set(objects["labels"].tolist()) <= set(CLASSES.values())


@st.composite
def annotation_csv(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 5))):
        path = draw(st.sampled_from(["a.jpg", "b/c.png", "", " d.jpg", "e,f.jpg"]))
        fields = [path] + [draw(NUMBERS) for _ in range(4)] + [draw(NAMES)]
        if draw(st.integers(0, 4)) == 0:
            fields = fields[: draw(st.integers(0, 6))] + [""] * draw(st.integers(0, 2))
        if draw(st.integers(0, 4)) == 0:
            fields = [path, "", "", "", "", ""]  # an image without objects
        lines.append(",".join(fields))
    text = "\n".join(lines)
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.text(max_size=120))
    return text


@FUZZ
@given(document=annotation_csv())
def test_csv_annotations(document):
    read = _read_or_reject(document, ".csv", lambda path: read_annotations_csv(path, CLASSES))
    if read is None:
        return
    images, annotations = read
    assert len(images) == len(annotations) == len(set(images))
    for item in annotations:
        boxes = item["bboxes"]
        assert boxes.shape == (len(item["labels"]), 4) and np.isfinite(boxes).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert set(item["labels"].tolist()) <= set(CLASSES.values())


@FUZZ
@given(
    rows=st.lists(st.tuples(NAMES, NUMBERS), max_size=5),
    extra=st.sampled_from(["", ",x", ",", "\n\n", "\ufeff"]),
)
def test_csv_classes(rows, extra):
    text = "\n".join(f"{name},{number}" for name, number in rows) + extra
    names = _read_or_reject(text, ".csv", read_classes_csv)
    if names is None:
        return
    assert names and all(isinstance(n, str) and n for n in names)
    assert len(set(names)) == len(names)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-1e3, 1e3) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def anchor_file(draw) -> tuple[str, str]:
    keys = ["sizes", "strides", "ratios", "scales", "size", "anchor_parameters"]
    if draw(st.booleans()):
        value = draw(
            st.dictionaries(
                st.sampled_from(keys),
                st.one_of(st.lists(st.integers(-4, 600), max_size=6), JSON),
                max_size=4,
            )
            | JSON
        )
        return json.dumps(value), ".json"
    section = draw(st.sampled_from(["[anchor_parameters]", "[other]", "", "[anchor_parameters"]))
    lines = [section] + [
        f"{draw(st.sampled_from(keys))} = {' '.join(draw(st.lists(NUMBERS, max_size=5)))}"
        for _ in range(draw(st.integers(0, 5)))
    ]
    return "\n".join(lines), draw(st.sampled_from([".ini", ".cfg", ""]))


@FUZZ
@given(document=anchor_file())
def test_anchor_configuration(document):
    text, suffix = document
    parameters = _read_or_reject(text, suffix, read_anchor_parameters)
    if parameters is None:
        return
    assert parameters.num_anchors >= 1
    for values in (parameters.sizes, parameters.strides, parameters.ratios, parameters.scales):
        assert all(math.isfinite(v) and v > 0 for v in values)
    assert len(parameters.sizes) == len(parameters.strides)


@st.composite
def coco_json(draw) -> str:
    def maybe(value):
        return draw(st.one_of(st.just(value), JSON))

    images = [
        {"id": maybe(i), "file_name": maybe(f"{i}.jpg"), "width": maybe(64), "height": maybe(48)}
        for i in range(draw(st.integers(0, 3)))
    ]
    categories = [{"id": maybe(c), "name": maybe(f"c{c}")} for c in range(draw(st.integers(0, 3)))]
    annotations = [
        {
            "id": maybe(a),
            "image_id": maybe(draw(st.integers(0, 3))),
            "category_id": maybe(draw(st.integers(0, 3))),
            "bbox": maybe([draw(st.floats(-10, 80)) for _ in range(4)]),
            "iscrowd": maybe(0),
            "area": maybe(10.0),
        }
        for a in range(draw(st.integers(0, 4)))
    ]
    document = {"images": images, "categories": categories, "annotations": annotations}
    for key in draw(st.lists(st.sampled_from(list(document)), unique=True, max_size=2)):
        document[key] = draw(JSON)
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=60))
    return json.dumps(document)


@FUZZ
@given(document=coco_json())
def test_coco_json(document):
    pytest.importorskip("pycocotools")
    from keras_retinanet.preprocessing.coco import CocoGenerator

    with tempfile.TemporaryDirectory() as root:
        path = Path(root, "annotations", "instances_x.json")
        path.parent.mkdir()
        path.write_text(document)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                generator = CocoGenerator(root, "x", batch_size=1, shuffle=False)
                annotations = [generator.load_annotations(i) for i in range(generator.size())]
        except Exception as error:  # noqa: BLE001
            _rejected(error, str(path), DataFileError)
            return
    for item in annotations:
        boxes = item["bboxes"]
        assert boxes.shape == (len(item["labels"]), 4) and np.isfinite(boxes).all()
        assert ((0 <= item["labels"]) & (item["labels"] < generator.num_classes())).all()


MODES = {
    "L": ("PNG", "JPEG", "BMP", "TIFF", "WEBP"),
    "RGB": ("PNG", "JPEG", "BMP", "TIFF", "WEBP"),
    "RGBA": ("PNG", "TIFF", "WEBP"),
    "P": ("PNG", "BMP", "GIF"),
    "CMYK": ("JPEG", "TIFF"),
    "I;16": ("PNG", "TIFF"),
    "1": ("PNG", "BMP", "TIFF"),
}


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` with almost no data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\0" * 64)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data
    idat += struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat


@st.composite
def image_file(draw) -> tuple[bytes, str, tuple[int, int] | None]:
    """(bytes, extension, (height, width) when the bytes are a whole image)."""
    mode = draw(st.sampled_from(sorted(MODES)))
    image_format = draw(st.sampled_from(MODES[mode]))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    pixels = np.random.default_rng(draw(st.integers(0, 99))).integers(0, 255, (height, width))
    if mode == "I;16":
        image = Image.fromarray((pixels * 257).astype(np.uint16))
    else:
        image = Image.fromarray(pixels.astype(np.uint8), "L").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    data, size = buffer.getvalue(), (height, width)
    change = draw(st.sampled_from(["none", "cut", "empty", "noise", "flip", "huge"]))
    if change == "cut":
        data, size = data[: draw(st.integers(0, max(0, len(data) - 1)))], None
    elif change == "empty":
        data, size = b"", None
    elif change == "noise":
        data, size = draw(st.binary(max_size=300)), None
    elif change == "flip":  # a byte of the file changed
        position = draw(st.integers(0, len(data) - 1))
        data = data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :]
        size = None
    elif change == "huge":
        data, size = _png_claiming(draw(st.integers(30000, 2**31 - 1)), 60000), None
    extension = draw(st.sampled_from([".jpg", ".png", ".bmp", ".txt", "", f".{image_format}"]))
    return data, extension, size


@FUZZ
@given(case=image_file())
def test_images(case):
    data, extension, size = case
    image = _read_or_reject(data, extension, read_image_bgr, ImageReadError)
    if image is None:
        assert size is None, "a whole image was refused"
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if size is not None:  # a whole image: read at its own size, whatever its extension
        assert image.shape[:2] == size
