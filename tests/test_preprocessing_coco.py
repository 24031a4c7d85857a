"""CocoGenerator on a tiny COCO json written by the test."""

import json

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.preprocessing.coco import CocoGenerator


@pytest.fixture
def coco_dir(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val").mkdir()
    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "val" / "a.jpg")
    Image.new("RGB", (20, 50), (10, 20, 30)).save(tmp_path / "val" / "b.jpg")
    coco = {
        "images": [
            {"id": 7, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 3, "file_name": "b.jpg", "width": 20, "height": 50},
        ],
        # Sparse ids, as in COCO (1..90 for 80 classes), listed out of order.
        "categories": [{"id": 5, "name": "dog"}, {"id": 2, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 5, "bbox": [1, 2, 10, 5], "iscrowd": 0,
             "area": 50},
            {"id": 2, "image_id": 7, "category_id": 2, "bbox": [0, 0, 40, 30], "iscrowd": 1,
             "area": 1200},
            {"id": 3, "image_id": 7, "category_id": 2, "bbox": [20.5, 10, 4.5, 8], "iscrowd": 0,
             "area": 36},
        ],
    }  # fmt: skip
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    return tmp_path


def test_boxes_converted_crowd_skipped_labels_in_category_order(coco_dir):
    generator = CocoGenerator(coco_dir, "val", shuffle=False, group_method="none")
    assert generator.size() == 2 and generator.classes == ["cat", "dog"]
    # Images in id order: 3 (b.jpg, no objects), then 7 (a.jpg).
    assert generator.coco_image_id(0) == 3 and generator.image_path(1).endswith("val/a.jpg")
    assert len(generator.load_annotations(0)["labels"]) == 0
    annotations = generator.load_annotations(1)
    # [x, y, w, h] = [1, 2, 10, 5] -> (1, 2, 11, 7); the crowd box is left out.
    np.testing.assert_allclose(annotations["bboxes"], [[1, 2, 11, 7], [20.5, 10, 25, 18]])
    assert annotations["labels"].tolist() == [1, 0]  # dog (id 5) -> 1, cat (id 2) -> 0
    assert not annotations["difficult"].any()
    assert generator.label_to_coco_label(1) == 5 and generator.coco_label_to_label(2) == 0
    assert generator.image_aspect_ratio(1) == pytest.approx(40 / 30)
    assert generator.load_image(1).shape == (30, 40, 3)
    assert generator.dataset_info() == {
        "type": "coco",
        "data_dir": str(coco_dir),
        "set_name": "val",
    }


def test_legacy_images_folder_is_found(coco_dir):
    (coco_dir / "images").mkdir()
    (coco_dir / "val").rename(coco_dir / "images" / "val")
    generator = CocoGenerator(coco_dir, "val", shuffle=False)
    assert generator.load_image(generator.image_ids.index(7)).shape == (30, 40, 3)


def test_missing_annotation_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"annotations/instances_train2017\.json"):
        CocoGenerator(tmp_path, "train2017")
