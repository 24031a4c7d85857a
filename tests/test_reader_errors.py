"""What the readers' fuzz tests (test_fuzz_readers.py) found, one regular test each: files that
ended in another exception, or were read into values no detector can use, and are now
rejected with the package's own error naming the file and the field."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from keras_retinanet.model.anchor_config import read_anchor_parameters
from keras_retinanet.model.files import DataFileError
from keras_retinanet.preprocessing.image import ImageReadError, read_image_bgr
from keras_retinanet.preprocessing.voc import read_voc_annotation


def test_an_anchor_json_that_is_not_an_object_is_named(tmp_path):
    path = tmp_path / "anchors.json"
    path.write_text("[]")  # was AttributeError: 'list' object has no attribute 'items'
    with pytest.raises(DataFileError, match=f"{path}.*expected a JSON object"):
        read_anchor_parameters(str(path))


@pytest.mark.parametrize(
    "values, said",
    [
        ({"ratios": [0]}, "ratios must hold positive numbers, got 0"),  # was accepted
        ({"sizes": [-32, 64, 128, 256, 512]}, "sizes must hold positive numbers"),
        ({"scales": []}, "scales must be a non-empty list"),
        ({"sizes": [32, 64]}, "got 2 sizes and 5 strides"),
    ],
)
def test_anchor_values_no_model_can_use_are_refused(tmp_path, values, said):
    path = tmp_path / "anchors.json"
    path.write_text(json.dumps(values))
    with pytest.raises(DataFileError, match=said):
        read_anchor_parameters(str(path))


@pytest.mark.parametrize("text", ["nan", "inf", "-Infinity"])
def test_a_voc_coordinate_that_is_not_finite_is_refused(tmp_path, text):
    path = tmp_path / "a.xml"
    path.write_text(
        "<annotation><object><name>cat</name><bndbox><xmin>0</xmin><ymin>0</ymin>"
        f"<xmax>5</xmax><ymax>{text}</ymax></bndbox></object></annotation>"
    )  # was read as a box with a NaN or infinite corner
    with pytest.raises(DataFileError, match=f"{path}: object 0 <bndbox>/<ymax> is not a number"):
        read_voc_annotation(str(path), {"cat": 0})


def _coco(tmp_path, document):
    pytest.importorskip("pycocotools")
    from keras_retinanet.preprocessing.coco import CocoGenerator

    path = tmp_path / "annotations" / "instances_x.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path, lambda: CocoGenerator(str(tmp_path), "x", batch_size=1, shuffle=False)


@pytest.mark.parametrize(
    "document, said",
    [
        ("", "not a COCO detection file"),  # was JSONDecodeError from pycocotools
        (
            {"images": [], "annotations": [], "categories": [{"id": 0, "name": []}]},
            r'categories\[0\] has "name" \[\], not a name',  # was TypeError: unhashable
        ),
        (
            {"images": [], "annotations": [], "categories": [{"id": None, "name": "c"}]},
            r'categories\[0\] has "id" None, not an integer',  # was TypeError in int()
        ),
        (
            {
                "images": [{"id": 1, "file_name": "a.jpg"}],
                "categories": [{"id": 1, "name": "c"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4]}],
            },
            r'annotations\[0\] has "bbox" \[0, 0, 4\], not \[x, y, width, height\]',
        ),
    ],
)
def test_a_coco_file_with_a_wrong_field_names_it(tmp_path, document, said):
    path, load = _coco(tmp_path, document)
    with pytest.raises(DataFileError, match=said) as error:
        load()
    assert str(path) in str(error.value)


def test_an_image_declaring_billions_of_pixels_is_an_image_read_error(tmp_path):
    # A PNG header claiming 30000 x 60000 pixels with almost no data behind it: Pillow's
    # DecompressionBombError escaped (it is no OSError).
    header = struct.pack(">IIBBBBB", 30000, 60000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk
    data += struct.pack(">I", zlib.crc32(chunk))
    pixels = zlib.compress(b"\0" * 64)
    data += struct.pack(">I", len(pixels)) + b"IDAT" + pixels
    data += struct.pack(">I", zlib.crc32(b"IDAT" + pixels))
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match=f"cannot read image {path}.*pixels"):
        read_image_bgr(str(path))
