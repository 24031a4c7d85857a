"""PascalVocGenerator on the real VOC-layout samples in ../shared/data, and its error messages."""

import warnings

import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet.preprocessing.voc import VOC_CLASSES, PascalVocGenerator, read_class_names

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())


def voc(name, set_name="trainval", **kwargs):
    kwargs.setdefault("shuffle", False)
    kwargs.setdefault("group_method", "none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bccd's zero-area boxes; tested on their own below
        return PascalVocGenerator(DATA / name, set_name, **kwargs)


def write_voc(root, objects_xml, classes=("cat", "dog"), name="img0"):
    """A one-image VOC-layout dataset; returns its folder."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text(f"{name}\n")
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    (root / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.jpg</filename>{objects_xml}</annotation>"
    )
    return root


def voc_object(name, box, difficult=0):
    xmin, ymin, xmax, ymax = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
        f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
        "</bndbox></object>"
    )


# ----------------------------------------------------------------------------- real data


@needs_data
def test_voc2007_boxes_are_converted_to_0_based_and_difficult_objects_flagged():
    generator = voc("voc2007_sample", "test")
    assert generator.size() == 5 and generator.num_classes() == 20
    assert generator.classes == list(VOC_CLASSES)
    index = generator.image_names.index("000005")
    annotations = generator.load_annotations(index)
    # 000005.xml: 5 chairs, the 3rd and 5th difficult.
    assert annotations["labels"].tolist() == [generator.name_to_label("chair")] * 5
    assert annotations["difficult"].tolist() == [False, False, True, False, True]
    assert annotations["bboxes"].dtype == np.float32 and annotations["labels"].dtype == np.int64
    # First chair: xmin 263, ymin 211, xmax 324, ymax 339 -> (262, 210, 324, 339); the width
    # 324 - 262 = 62 is VOC's xmax - xmin + 1.
    np.testing.assert_array_equal(annotations["bboxes"][0], [262, 210, 324, 339])
    total_difficult = sum(generator.load_annotations(i)["difficult"].sum() for i in range(5))
    assert total_difficult == 2  # README: 2 difficult objects in voc2007_sample


@needs_data
def test_skip_difficult_drops_difficult_objects():
    generator = voc("voc2007_sample", "test", skip_difficult=True)
    annotations = generator.load_annotations(generator.image_names.index("000005"))
    assert len(annotations["labels"]) == 3 and not annotations["difficult"].any()


@needs_data
def test_voc2012_person_parts_are_not_objects():
    generator = voc("voc2012_sample")
    annotations = generator.load_annotations(generator.image_names.index("2007_000027"))
    # One person with 4 <part> boxes inside: one object, the person's own bndbox
    # (174, 101, 349, 351) -> (173, 100, 349, 351).
    assert annotations["labels"].tolist() == [VOC_CLASSES.index("person")]
    np.testing.assert_array_equal(annotations["bboxes"], [[173, 100, 349, 351]])
    total = sum(len(generator.load_annotations(i)["labels"]) for i in range(generator.size()))
    assert total == 11  # README: 11 objects in voc2012_sample


@needs_data
def test_raccoon_grayscale_images_load_as_three_channels():
    generator = voc("raccoon", "trainval", classes=DATA / "raccoon" / "classes.txt")
    assert generator.classes == ["raccoon"]
    gray = [i for i, n in enumerate(generator.image_names) if n in ("raccoon-150", "raccoon-152")]
    assert gray, "the grayscale images should be in raccoon's trainval split"
    for index in gray:
        image = generator.load_image(index)
        assert image.shape == (183, 275, 3) and image.dtype == np.uint8
        # Gray replicated into B, G and R.
        assert np.array_equal(image[..., 0], image[..., 1])
        assert np.array_equal(image[..., 1], image[..., 2])
    assert generator.image_aspect_ratio(gray[0]) == pytest.approx(275 / 183)


@needs_data
def test_bccd_single_pixel_boxes_are_kept_as_one_pixel_boxes():
    # VOC boxes are inclusive: xmin == xmax is one pixel wide, and the devkit counts such a
    # box in the recall denominator, so the parser keeps it (and says so).
    with pytest.warns(UserWarning, match="single-pixel") as record:
        generator = PascalVocGenerator(
            DATA / "bccd", "trainval", classes=DATA / "bccd" / "classes.txt", shuffle=False
        )
    messages = " ".join(str(w.message) for w in record)
    assert "BloodImage_00338" in messages and "BloodImage_00343" in messages
    index = generator.image_names.index("BloodImage_00338")
    bboxes = generator.load_annotations(index)["bboxes"]
    # (504, 337, 504, 337) in VOC terms is x1 = 504 - 1, x2 = 504: a 1x1 box.
    one_pixel = (bboxes[:, 0] == 503) & (bboxes[:, 1] == 336)
    assert one_pixel.sum() == 1
    assert bboxes[one_pixel].tolist() == [[503, 336, 504, 337]]


def test_inverted_boxes_are_dropped_with_a_warning(tmp_path):
    objects = voc_object("dog", (10, 10, 9, 20)) + voc_object("dog", (5, 5, 5, 30))
    root = write_voc(tmp_path / "data", objects)
    with pytest.warns(UserWarning, match="inverted"):
        generator = PascalVocGenerator(root, "train", shuffle=False)
    # The inverted box (xmax 9 < xmin 10) goes; the 1-pixel-wide one stays, 1 px wide.
    assert generator.load_annotations(0)["bboxes"].tolist() == [[4, 4, 5, 30]]


@needs_data
def test_dataset_info_rebuilds_the_generator():
    generator = voc("raccoon", "test", classes=DATA / "raccoon" / "classes.txt")
    info = generator.dataset_info()
    assert info["type"] == "voc" and info["set_name"] == "test" and info["classes"] == ["raccoon"]
    rebuilt = PascalVocGenerator(**{k: v for k, v in info.items() if k != "type"})
    assert rebuilt.size() == generator.size() == 40


# ----------------------------------------------------------------------------- errors


def test_missing_folder_and_set_file_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found.*Annotations/ and JPEGImages/"):
        PascalVocGenerator(tmp_path / "nope", "trainval")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no annotation found in .*empty.*LabelImg"):
        PascalVocGenerator(tmp_path / "empty", "trainval")
    root = write_voc(tmp_path / "ds", voc_object("cat", (1, 1, 5, 5)))
    with pytest.raises(FileNotFoundError, match=r"trainval\.txt.*\['train'\]"):
        PascalVocGenerator(root, "trainval", classes=root / "classes.txt")


def test_unknown_class_names_the_xml_and_suggests_classes(tmp_path):
    root = write_voc(tmp_path / "ds", voc_object("horse", (1, 1, 5, 5)))
    with pytest.raises(ValueError, match=r"img0\.xml.*'horse'.*--classes"):
        PascalVocGenerator(root, "train", classes=root / "classes.txt")


def test_malformed_xml_and_coordinates_name_the_file(tmp_path):
    root = write_voc(tmp_path / "a", voc_object("cat", (1, 1, "x5", 5)))
    with pytest.raises(ValueError, match=r"img0\.xml: object 0 <bndbox>/<xmax> is not a number"):
        PascalVocGenerator(root, "train", classes=["cat"])
    root = write_voc(tmp_path / "b", "<object><name>cat</name>")
    with pytest.raises(ValueError, match=r"malformed XML in .*img0\.xml"):
        PascalVocGenerator(root, "train", classes=["cat"])


def test_entities_are_not_expanded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("cat")
    root = write_voc(tmp_path / "ds", "")
    # An external entity whose expansion would turn the object's name into "cat".
    (root / "Annotations" / "img0.xml").write_text(
        f'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file://{secret}">]>'
        "<annotation><object><name>&e;</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
        "<xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match="has no <name>"):
        PascalVocGenerator(root, "train", classes=["cat"])


def test_custom_classes_list_or_file(tmp_path):
    root = write_voc(
        tmp_path / "ds", voc_object("dog", (11, 21, 30, 40)) + voc_object("cat", (1, 1, 5, 5), 1)
    )
    for classes in (["cat", "dog"], root / "classes.txt", str(root / "classes.txt")):
        generator = PascalVocGenerator(root, "train", classes=classes)
        annotations = generator.load_annotations(0)
        assert annotations["labels"].tolist() == [1, 0]
        assert annotations["difficult"].tolist() == [False, True]
        np.testing.assert_array_equal(annotations["bboxes"][0], [10, 20, 30, 40])
        assert generator.label_to_name(1) == "dog" and generator.has_label(1)
        assert not generator.has_label(2)


def test_read_class_names_rejects_duplicates(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("cat\n\ndog\ncat\n")
    with pytest.raises(ValueError, match=r"line 4: duplicate class name 'cat' \(first on line 1\)"):
        read_class_names(path)
    with pytest.raises(ValueError, match="duplicate"):
        read_class_names(["a", "a"])
