"""The synthetic shapes dataset: real VOC files, deterministic, readable by PascalVocGenerator."""

import numpy as np
from lxml import etree

from keras_retinanet.datasets import SHAPE_CLASSES, write_shapes_dataset
from keras_retinanet.datasets.shapes import _background, _draw_image, main
from keras_retinanet.preprocessing.voc import PascalVocGenerator


def files_of(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_voc_coordinates(tmp_path):
    root = write_shapes_dataset(tmp_path / "shapes", num_train=6, num_test=2, seed=0)
    assert root == tmp_path / "shapes"
    assert (root / "classes.txt").read_text().split() == list(SHAPE_CLASSES)
    assert (root / "ImageSets/Main/trainval.txt").read_text().split() == [
        f"{i:06d}" for i in range(6)
    ]
    assert (root / "ImageSets/Main/test.txt").read_text().split() == ["000006", "000007"]
    assert len(list((root / "JPEGImages").glob("*.jpg"))) == 8
    xml = etree.parse(str(root / "Annotations" / "000000.xml")).getroot()
    assert xml.findtext("size/width") == "256" and xml.findtext("size/height") == "256"
    for obj in xml.findall("object"):
        box = [int(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
        # 1-based inclusive: the first pixel is 1, the last is 256.
        assert 1 <= box[0] <= box[2] <= 256 and 1 <= box[1] <= box[3] <= 256


def test_generator_reads_it_with_sizes_and_counts_in_range(tmp_path):
    root = write_shapes_dataset(tmp_path, num_train=12, num_test=3, image_size=(128, 160), seed=1)
    generator = PascalVocGenerator(root, "trainval", classes=root / "classes.txt", shuffle=False)
    assert generator.size() == 12 and generator.classes == list(SHAPE_CLASSES)
    seen = set()
    for index in range(generator.size()):
        image = generator.load_image(index)
        assert image.shape == (128, 160, 3)
        annotations = generator.load_annotations(index)
        boxes = annotations["bboxes"]
        assert 1 <= len(boxes) <= 4
        sides = np.concatenate([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
        # Drawn into 30..120 px boxes; an ellipse covers at least w - 1 of them.
        assert sides.min() >= 29 and sides.max() <= 120
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 160).all()
        assert (boxes[:, 3] <= 128).all()
        # Shapes are kept apart: no two boxes of an image overlap.
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
        seen.update(annotations["labels"].tolist())
    assert seen == {0, 1, 2}


def test_box_is_tight_around_the_shape_and_written_1_based(tmp_path):
    # The first image of seed 2, drawn again: its background is the first thing drawn from the
    # generator, so the pixels that differ from it are exactly the shapes.
    background = _background(np.random.default_rng(2), 256, 256).astype(np.uint8)
    image, objects = _draw_image(np.random.default_rng(2), 256, 256, (1, 4), 30, 120)
    changed = np.any(image != background, axis=2)
    for _, (px_x1, px_y1, px_x2, px_y2) in objects:
        # Shapes are 2 px apart, so this window holds one shape.
        window = np.zeros_like(changed)
        window[max(0, px_y1 - 2) : px_y2 + 3, max(0, px_x1 - 2) : px_x2 + 3] = True
        ys, xs = np.nonzero(changed & window)
        assert (xs.min(), ys.min(), xs.max(), ys.max()) == (px_x1, px_y1, px_x2, px_y2)

    root = write_shapes_dataset(tmp_path, num_train=1, num_test=0, seed=2)
    generator = PascalVocGenerator(root, "trainval", classes=root / "classes.txt")
    # Covered pixels px_x1..px_x2 -> VOC xmin = px_x1 + 1, xmax = px_x2 + 1 -> the loader's
    # 0-based half-open (px_x1, px_x2 + 1).
    expected = [[x1, y1, x2 + 1, y2 + 1] for _, (x1, y1, x2, y2) in objects]
    np.testing.assert_array_equal(generator.load_annotations(0)["bboxes"], expected)
    assert [generator.classes[v] for v in generator.load_annotations(0)["labels"]] == [
        kind for kind, _ in objects
    ]


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    a = write_shapes_dataset(tmp_path / "a", num_train=3, num_test=1, seed=5)
    b = write_shapes_dataset(tmp_path / "b", num_train=3, num_test=1, seed=5)
    c = write_shapes_dataset(tmp_path / "c", num_train=3, num_test=1, seed=6)
    assert files_of(a) == files_of(b)
    assert files_of(a)[next(iter(files_of(a)))] != files_of(c)[next(iter(files_of(c)))]


def test_command_line(tmp_path, capsys):
    path = main([str(tmp_path / "cli"), "--train", "2", "--test", "1", "--size", "64", "96"])
    assert capsys.readouterr().out.strip() == str(path)
    assert len(list((path / "Annotations").glob("*.xml"))) == 3
