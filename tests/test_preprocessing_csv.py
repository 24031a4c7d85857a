"""CSVGenerator: fizyr's annotation format, built from the real datasets, and its errors."""

import os
import warnings

import numpy as np
import pytest
from shared_data import DATA, missing_reason

from keras_retinanet.preprocessing.csv import CSVGenerator, read_classes_csv
from keras_retinanet.preprocessing.voc import PascalVocGenerator

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())


def write(path, text):
    path.write_text(text)
    return path


def classes_csv(tmp_path, text="cat,0\ndog,1\n"):
    return write(tmp_path / "classes.csv", text)


@needs_data
def test_csv_built_from_voc_datasets_matches_them(tmp_path):
    """Rows written from voc2007_sample and raccoon (relative paths, an image with no objects)
    read back as the same images and boxes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sources = [
            PascalVocGenerator(DATA / "voc2007_sample", "test", shuffle=False),
            PascalVocGenerator(
                DATA / "raccoon", "test", classes=DATA / "raccoon" / "classes.txt", shuffle=False
            ),
        ]
    names = list(sources[0].classes) + ["raccoon"]
    write(tmp_path / "classes.csv", "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    rows, expected = [], []
    for source in sources:
        for index in range(3):
            path = os.path.relpath(source.image_path(index), tmp_path)
            annotations = source.load_annotations(index)
            expected.append((source.image_path(index), annotations, source.classes))
            for box, label in zip(annotations["bboxes"], annotations["labels"]):
                x1, y1, x2, y2 = (int(v) for v in box)
                rows.append(f"{path},{x1},{y1},{x2},{y2},{source.classes[label]}")
    empty = os.path.relpath(sources[1].image_path(5), tmp_path)
    rows.append(f"{empty},,,,,")
    write(tmp_path / "annotations.csv", "\n".join(rows) + "\n")

    generator = CSVGenerator(tmp_path / "annotations.csv", tmp_path / "classes.csv", shuffle=False)
    assert generator.size() == 7 and generator.num_classes() == 21
    for index, (path, annotations, source_classes) in enumerate(expected):
        assert os.path.samefile(generator.image_path(index), path)
        loaded = generator.load_annotations(index)
        np.testing.assert_array_equal(loaded["bboxes"], annotations["bboxes"])
        assert [generator.label_to_name(v) for v in loaded["labels"]] == [
            source_classes[v] for v in annotations["labels"]
        ]
        assert not loaded["difficult"].any()
    assert len(generator.load_annotations(6)["labels"]) == 0  # the "path,,,,," image
    assert generator.load_image(6).shape[2] == 3
    info = generator.dataset_info()
    assert info["type"] == "csv" and info["annotations_csv"].endswith("annotations.csv")


def test_image_on_several_lines_and_decimal_coordinates(tmp_path):
    write(tmp_path / "a.csv", "x.jpg,1,2,10,20,cat\nx.jpg,0.5,1.5,3.25,4,dog\ny.jpg,,,,,\n")
    generator = CSVGenerator(tmp_path / "a.csv", classes_csv(tmp_path), shuffle=False)
    assert generator.size() == 2
    annotations = generator.load_annotations(0)
    np.testing.assert_array_equal(annotations["bboxes"], [[1, 2, 10, 20], [0.5, 1.5, 3.25, 4]])
    assert annotations["labels"].tolist() == [0, 1]
    assert generator.image_path(0) == str(tmp_path / "x.jpg")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("x.jpg,1,2,abc,20,cat", r"a\.csv, line 2: malformed x2 'abc'"),
        ("x.jpg,10,2,10,20,cat", r"a\.csv, line 2: x2 \(10\) must be larger than x1 \(10\)"),
        ("x.jpg,1,30,10,20,cat", r"line 2: y2 \(20\) must be larger than y1 \(30\)"),
        ("x.jpg,1,2,10,20,horse", r"line 2: unknown class 'horse'; the classes CSV has"),
        ("x.jpg,1,2,10,20", r"line 2: expected path,x1,y1,x2,y2,class_name"),
        (",1,2,10,20,cat", r"line 2: empty image path"),
    ],
)
def test_annotation_errors_name_the_line(tmp_path, line, message):
    write(tmp_path / "a.csv", f"ok.jpg,1,2,3,4,cat\n{line}\n")
    with pytest.raises(ValueError, match=message):
        CSVGenerator(tmp_path / "a.csv", classes_csv(tmp_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cat,0\ndog,1\ncat,2\n", r"line 3: duplicate class name 'cat' \(first on line 1\)"),
        ("cat,0\ndog,0\n", r"line 2: duplicate class id 0 for 'dog'"),
        ("cat,zero\n", r"line 1: malformed class id 'zero'"),
        ("cat,1\ndog,2\n", r"class ids must be 0 \.\. 1"),
        ("cat\n", r"line 1: expected 'class_name,id'"),
    ],
)
def test_classes_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_classes_csv(write(tmp_path / "classes.csv", text))


def test_classes_in_id_order(tmp_path):
    assert read_classes_csv(write(tmp_path / "c.csv", "dog,1\ncat,0\n")) == ["cat", "dog"]


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="classes CSV not found"):
        CSVGenerator(tmp_path / "a.csv", tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match=r"annotations CSV not found: .*a\.csv"):
        CSVGenerator(tmp_path / "a.csv", classes_csv(tmp_path))
