"""The Generator pipeline: batches, padding, grouping, targets, augmentation, bad images."""

import io
import pickle
import warnings

import numpy as np
import pytest
from PIL import Image
from shared_data import DATA, missing_reason

from keras_retinanet.model.anchors import (
    IGNORE,
    NEGATIVE,
    POSITIVE,
    anchors_for_shape,
    num_anchors_for_shape,
)
from keras_retinanet.model.boxes import bbox_transform_inv, compute_overlap
from keras_retinanet.model.targets import anchor_targets_bbox
from keras_retinanet.preprocessing.csv import CSVGenerator
from keras_retinanet.preprocessing.image import ImageReadError
from keras_retinanet.preprocessing.transform import flip_boxes_horizontally, random_transform
from keras_retinanet.preprocessing.voc import PascalVocGenerator

needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=missing_reason())


def voc2007(**kwargs):
    kwargs.setdefault("shuffle", False)
    kwargs.setdefault("group_method", "none")
    return PascalVocGenerator(DATA / "voc2007_sample", "test", **kwargs)


def raccoon(**kwargs):
    return PascalVocGenerator(
        DATA / "raccoon", "trainval", classes=DATA / "raccoon" / "classes.txt", **kwargs
    )


def write_csv_dataset(root, images):
    """images: {file name: (PIL image or raw bytes, [csv box rows])} -> a CSVGenerator's files."""
    lines = []
    for name, (content, rows) in images.items():
        if isinstance(content, bytes):
            (root / name).write_bytes(content)
        else:
            content.save(root / name, **({"format": "PNG"} if name.endswith(".jpg") else {}))
        lines += [f"{name},{row}" for row in rows] or [f"{name},,,,,"]
    (root / "annotations.csv").write_text("\n".join(lines) + "\n")
    (root / "classes.csv").write_text("cat,0\ndog,1\n")
    return root / "annotations.csv", root / "classes.csv"


# ----------------------------------------------------------------------------- targets


@needs_data
def test_every_box_larger_than_32_px_gets_a_positive_anchor_at_800_1333():
    generator = voc2007(image_min_side=800, image_max_side=1333)
    checked = 0
    for index in range(generator.size()):
        images, annotations, scales = generator.preprocess_group([index])
        inputs, (regression, classification) = generator[index]
        height, width = images[0].shape[:2]
        # The shorter side is 800 (these VOC images are at most 500 px, so 1333 never binds).
        assert min(height, width) == 800 and scales[0] == pytest.approx(
            800 / min(generator.load_image(index).shape[:2])
        )
        assert inputs.shape[1] % 32 == 0 and inputs.shape[2] % 32 == 0
        anchors = anchors_for_shape(inputs.shape[1:3])
        assert regression.shape == (1, len(anchors), 5)
        assert classification.shape == (1, len(anchors), generator.num_classes() + 1)
        state = regression[0, :, 4]
        decoded = bbox_transform_inv(anchors, regression[0, :, :4])
        for box, label, difficult in zip(
            annotations[0]["bboxes"], annotations[0]["labels"], annotations[0]["difficult"]
        ):
            if difficult or min(box[2] - box[0], box[3] - box[1]) <= 32:
                continue
            # A positive anchor of the box's class whose regression target decodes to the box.
            matches = (
                (state == POSITIVE)
                & (classification[0, :, label] == 1)
                & np.all(np.abs(decoded - box) < 1e-2, axis=1)
            )
            assert matches.any(), f"no positive anchor for box {box} of image {index}"
            checked += 1
    assert checked >= 10  # 17 objects, 2 difficult, a few small


def dense_iou(anchors, boxes):
    """IoU by the textbook formula over all pairs, as an independent reference."""
    a, b = anchors[:, None, :].astype(np.float64), boxes[None, :, :].astype(np.float64)
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return iw * ih / (area_a + area_b - iw * ih)


@needs_data
def test_anchor_states_follow_the_iou_thresholds_on_a_dense_reference():
    generator = voc2007(image_min_side=400, image_max_side=667)
    index = generator.image_names.index("000004")  # 7 cars, none difficult
    images, annotations, _ = generator.preprocess_group([index])
    inputs, (regression, classification) = generator[index]
    anchors = anchors_for_shape(inputs.shape[1:3])
    iou = dense_iou(anchors, annotations[0]["bboxes"])
    max_iou = iou.max(axis=1)
    state = regression[0, :, 4]
    height, width = images[0].shape[:2]
    in_padding = ((anchors[:, 0] + anchors[:, 2]) / 2 >= width) | (
        (anchors[:, 1] + anchors[:, 3]) / 2 >= height
    )
    assert in_padding.any()  # the 32-multiple padding holds anchors to check
    # fg >= 0.5, bg < 0.4, ignored between, the anchors over the padding included (they are
    # supervised like the rest); each box's best anchor is positive even below 0.5
    # (low-quality matches).
    assert np.all(state[max_iou >= 0.5] == POSITIVE)
    assert np.all(state[max_iou < 0.4] != IGNORE)
    assert (state[in_padding & (max_iou < 0.4)] == NEGATIVE).all()
    best = iou.argmax(axis=0)
    assert np.all(state[best] == POSITIVE)
    np.testing.assert_array_equal(classification[0, :, -1], state)
    assert np.all(classification[0, state == POSITIVE, :-1].sum(axis=1) == 1)


@needs_data
def test_difficult_boxes_have_ignored_not_negative_anchors():
    generator = voc2007(image_min_side=400, image_max_side=667)
    index = generator.image_names.index("000005")
    images, annotations, _ = generator.preprocess_group([index])
    inputs, (regression, _) = generator[index]
    difficult = annotations[0]["bboxes"][annotations[0]["difficult"]]
    assert len(difficult) == 2
    overlap = compute_overlap(anchors_for_shape(inputs.shape[1:3]), difficult).max(axis=1)
    near = overlap >= 0.4
    assert near.any()
    assert np.all(regression[0, near, 4] != 0)  # ignored, or positive for another chair
    assert np.any(regression[0, near, 4] == IGNORE)


@needs_data
def test_flipped_image_targets_equal_flipped_boxes_targets():
    flip = random_transform(flip_prob=1.0, scale=None, translate=0.0, color_jitter=False)
    flipped = voc2007(image_min_side=300, image_max_side=500, transform=flip)
    plain = voc2007(image_min_side=300, image_max_side=500)
    for index in (0, 4):
        inputs, (regression, classification) = flipped[index]
        original = plain.load_image(index)
        boxes = flip_boxes_horizontally(plain.load_annotations(index)["bboxes"], original.shape[1])
        image, scale = plain.resize_image(original[:, ::-1])
        expected_annotations = dict(plain.load_annotations(index), bboxes=boxes * scale)
        anchors = anchors_for_shape(plain.padded_shape([image]))
        expected = anchor_targets_bbox(anchors, [image], [expected_annotations], 20)
        np.testing.assert_allclose(regression, expected[0], atol=1e-4)
        np.testing.assert_array_equal(classification, expected[1])
        np.testing.assert_allclose(inputs, plain.compute_inputs([image]), atol=1e-3)
        assert (regression[0, :, 4] == POSITIVE).any()


# ----------------------------------------------------------------------------- batches


@needs_data
def test_batches_are_padded_to_a_multiple_of_32_with_zeros():
    generator = raccoon(
        batch_size=3, image_min_side=96, image_max_side=160, shuffle=False, group_method="ratio"
    )
    inputs, (regression, classification) = generator[0]
    images, _, _ = generator.preprocess_group(generator.groups[0])
    assert inputs.shape[0] == 3 and inputs.dtype == np.float32
    height, width = inputs.shape[1:3]
    assert height % 32 == 0 and width % 32 == 0
    assert height - 32 < max(i.shape[0] for i in images) <= height
    assert regression.shape == (3, num_anchors_for_shape((height, width)), 5)
    assert classification.shape[2] == 2  # 1 class + the anchor state
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        assert np.all(inputs[k, h:] == 0) and np.all(inputs[k, :, w:] == 0)
        # Caffe mode: BGR minus (103.939, 116.779, 123.68).
        np.testing.assert_allclose(
            inputs[k, 0, 0], image[0, 0] - [103.939, 116.779, 123.68], atol=1e-4
        )


@needs_data
def test_ratio_grouping_batches_similar_aspect_ratios():
    generator = raccoon(batch_size=4, shuffle=False, group_method="ratio")
    ratios = [[generator.image_aspect_ratio(int(i)) for i in group] for group in generator.groups]
    assert len(generator) == 40 and sum(len(g) for g in ratios) == generator.size() == 160
    for before, after in zip(ratios, ratios[1:]):
        assert max(before) <= min(after)


@needs_data
@pytest.mark.parametrize("batch_size", [2, 4, 7])
def test_full_batches_fill_the_last_group_from_the_epoch_order(batch_size):
    # 5 images: batches of 2 and 4 leave a short last group; 7 is more than the whole set.
    plain = voc2007(batch_size=batch_size, shuffle=True, group_method="ratio", seed=5)
    full = voc2007(batch_size=batch_size, shuffle=True, group_method="ratio", seed=5,
                   full_batches=True, image_min_side=64, image_max_side=96)  # fmt: skip
    assert any(len(group) < batch_size for group in plain.groups)  # (groups are shuffled)
    for _ in range(2):  # two epochs: the groups are reshuffled
        assert len(full) == len(plain) == -(-5 // batch_size)
        assert all(len(group) == batch_size for group in full.groups)
        # Every image is still seen each epoch, and only the filler repeats any.
        assert sorted({int(i) for g in full.groups for i in g}) == list(range(5))
        assert sum(len(g) for g in full.groups) == len(full) * batch_size
        for index in range(len(full)):
            inputs, (regression, classification) = full[index]
            assert inputs.shape[0] == regression.shape[0] == classification.shape[0]
            assert inputs.shape[0] == batch_size
        full.on_epoch_end()
        plain.on_epoch_end()


def test_full_batches_repeat_readable_images_when_one_is_skipped(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (16, 12), (1, 2, 3)).save(good, format="JPEG")
    files = {
        "a.jpg": (good.getvalue(), ["1,1,9,9,cat"]),
        "bad.jpg": (b"not an image", []),
        "b.jpg": (good.getvalue(), ["2,2,12,10,dog"]),
    }
    paths = write_csv_dataset(tmp_path, files)
    options = dict(shuffle=False, group_method="none", image_min_side=32, image_max_side=64,
                   batch_size=3, skip_bad_images=True)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        short = CSVGenerator(*paths, **options)[0]
        full = CSVGenerator(*paths, full_batches=True, **options)[0]
    assert short[0].shape[0] == 2
    inputs, (regression, classification) = full
    assert inputs.shape[0] == regression.shape[0] == classification.shape[0] == 3
    # The readable images in order, then the first again: a, b, a.
    np.testing.assert_array_equal(inputs[2], inputs[0])
    np.testing.assert_array_equal(regression[2], regression[0])
    assert not np.array_equal(regression[1], regression[0])


@needs_data
def test_worker_shards_are_disjoint_and_cover_the_dataset():
    # raccoon trainval: 160 images over 3 workers -> 54, 53 and 53 (index modulo 3).
    shards = [raccoon(batch_size=4, shard=(i, 3), seed=i) for i in range(3)]
    for _ in range(2):  # each epoch reshuffles within a worker's own part only
        seen = [sorted(int(i) for g in shard.groups for i in g) for shard in shards]
        assert [len(s) for s in seen] == [54, 53, 53]
        assert all(image % 3 == worker for worker, s in enumerate(seen) for image in s)
        assert sorted(sum(seen, [])) == list(range(160))
        for shard in shards:
            assert shard.size() == 160  # per-image methods still see the whole dataset
            shard.on_epoch_end()
    # A full-batch shard tops up its own last group from its own images.
    full = raccoon(batch_size=4, shard=(1, 3), full_batches=True, seed=0)
    assert all(len(g) == 4 and all(int(i) % 3 == 1 for i in g) for g in full.groups)


@needs_data
def test_bad_shards_are_refused():
    with pytest.raises(ValueError, match=r"0 <= index < count"):
        voc2007(shard=(2, 2))
    with pytest.raises(ValueError, match="has 5 images, too few to give each of 6 workers one"):
        voc2007(shard=(5, 6))


@needs_data
def test_shuffling_is_seeded_and_changes_every_epoch():
    a, b, c = (raccoon(batch_size=2, seed=seed) for seed in (1, 1, 2))
    as_lists = [[g.tolist() for g in gen.groups] for gen in (a, b, c)]
    assert as_lists[0] == as_lists[1] and as_lists[0] != as_lists[2]
    a.on_epoch_end()
    assert [g.tolist() for g in a.groups] != as_lists[0]
    assert sorted(int(i) for g in a.groups for i in g) == list(range(160))


@needs_data
def test_augmentation_is_deterministic_per_seed_and_epoch():
    def make():
        return voc2007(image_min_side=200, image_max_side=333, seed=7,
                       transform=random_transform(scale=(0.8, 1.2), translate=0.2))  # fmt: skip

    first, second = make(), make()
    np.testing.assert_array_equal(first[2][0], second[2][0])
    before = first[2][0]
    first.on_epoch_end()
    assert not np.array_equal(first[2][0], before)


@needs_data
def test_generator_pickles_and_rebuilds_batches():
    generator = voc2007(image_min_side=200, image_max_side=333, seed=3,
                        transform=random_transform())  # fmt: skip
    restored = pickle.loads(pickle.dumps(generator))
    np.testing.assert_array_equal(restored[1][0], generator[1][0])


# ----------------------------------------------------------------------------- images and boxes


def test_image_formats_become_three_channel_bgr(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 0, 255)).save(rotated, format="JPEG", exif=exif)
    palette = Image.new("P", (8, 6))
    palette.putpalette([255, 0, 0] * 256)
    files = {
        "png_named.jpg": (Image.new("RGB", (8, 6), (255, 0, 0)), []),
        "rgba.png": (Image.new("RGBA", (8, 6), (255, 0, 0, 10)), []),
        "palette.png": (palette, []),
        "gray.png": (Image.new("L", (8, 6), 77), []),
        "rotated.jpg": (rotated.getvalue(), []),
    }
    generator = CSVGenerator(*write_csv_dataset(tmp_path, files), shuffle=False)
    for index in range(4):
        image = generator.load_image(index)
        assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert generator.load_image(0)[0, 0].tolist() == [0, 0, 255]  # red, in BGR
    assert generator.load_image(3)[0, 0].tolist() == [77, 77, 77]
    # EXIF orientation 6: stored 20 x 10, displayed (and loaded) 10 wide and 20 tall.
    assert generator.load_image(4).shape == (20, 10, 3)
    assert generator.image_aspect_ratio(4) == pytest.approx(0.5)


def test_boxes_outside_the_image_are_dropped_with_a_warning_naming_it(tmp_path):
    files = {"a.png": (Image.new("RGB", (40, 30)), ["1,2,11,12,cat", "50,5,60,9,dog",
                                                   "30,20,45,30,dog"])}  # fmt: skip
    generator = CSVGenerator(*write_csv_dataset(tmp_path, files), image_min_side=60,
                             image_max_side=100, shuffle=False)  # fmt: skip
    with pytest.warns(UserWarning, match=r"a\.png: dropped 1 box.*outside the 40x30 image"):
        _, annotations, scales = generator.preprocess_group([0])
    assert scales == [2.0]  # 30 -> 60
    # Kept: the first box, and the third clipped from x2 = 45 to the border 40; doubled.
    np.testing.assert_array_equal(annotations[0]["bboxes"], [[2, 4, 22, 24], [60, 40, 80, 60]])
    assert annotations[0]["labels"].tolist() == [0, 1]


def test_unreadable_image_raises_naming_it_or_is_skipped_and_counted(tmp_path):
    good = io.BytesIO()
    Image.new("RGB", (16, 12), (1, 2, 3)).save(good, format="JPEG")
    files = {
        "good.jpg": (good.getvalue(), ["1,1,9,9,cat"]),
        "truncated.jpg": (good.getvalue()[: len(good.getvalue()) // 2], ["1,1,9,9,dog"]),
        "text.jpg": (b"not an image", []),
    }
    paths = write_csv_dataset(tmp_path, files)
    options = dict(shuffle=False, group_method="none", image_min_side=32, image_max_side=64)
    strict = CSVGenerator(*paths, **options)
    with pytest.raises(ImageReadError, match=r"truncated\.jpg"):
        strict[1]

    lenient = CSVGenerator(*paths, skip_bad_images=True, **options)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        inputs, (regression, _) = lenient[1]
    # Batches 1 and 2 are unreadable: the next readable batch (wrapping round to good.jpg)
    # stands in, and both bad files are named once.
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and all(m.startswith("skipping image") for m in messages)
    assert "truncated.jpg" in messages[0] and "text.jpg" in messages[1]
    assert inputs.shape[0] == 1 and (regression[0, :, 4] == POSITIVE).any()
    assert lenient.skipped_images == 2 and sorted(lenient.bad_images) == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known bad image is skipped without a new warning
        lenient[2]
    assert lenient.skipped_images == 2
    images, _, _ = lenient.preprocess_group([0, 1, 2])
    assert len(images) == 1


def test_image_without_objects_gives_only_negative_or_ignored_anchors(tmp_path):
    files = {"empty.png": (Image.new("RGB", (40, 30)), [])}
    generator = CSVGenerator(*write_csv_dataset(tmp_path, files), image_min_side=64,
                             image_max_side=128, shuffle=False)  # fmt: skip
    _, (regression, classification) = generator[0]
    assert set(np.unique(regression[0, :, 4]).tolist()) <= {0.0, -1.0}
    assert classification[0, :, 0].sum() == 0


def test_constructor_rejects_bad_options(tmp_path):
    paths = write_csv_dataset(tmp_path, {"a.png": (Image.new("RGB", (4, 4)), [])})
    with pytest.raises(ValueError, match="group_method"):
        CSVGenerator(*paths, group_method="size")
    with pytest.raises(ValueError, match="batch_size"):
        CSVGenerator(*paths, batch_size=0)


def test_empty_dataset_warns_and_has_no_batches(tmp_path):
    (tmp_path / "annotations.csv").write_text("")
    (tmp_path / "classes.csv").write_text("cat,0\n")
    with pytest.warns(UserWarning, match="has no images"):
        generator = CSVGenerator(tmp_path / "annotations.csv", tmp_path / "classes.csv")
    assert generator.size() == 0 and len(generator) == 0
    with pytest.raises(IndexError):
        generator[0]


@needs_data
def test_training_input_loads_ahead_across_passes_from_the_next_pass():
    # tf.data loads batches ahead; a batch loaded before a pass's end is seen by the model in
    # the next pass, so it must come from that pass (its order and augmentation draws), not
    # repeat the pass that ends. Step k is batch k % n of pass k // n, also on resume.
    pytest.importorskip("tensorflow")
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the tf.data input is TensorFlow's")
    from keras_retinanet.training import fit_input

    def make():
        return voc2007(batch_size=2, shuffle=True, group_method="random", seed=5,
                       image_min_side=64, image_max_side=96,
                       transform=random_transform(scale=None, translate=0.2))  # fmt: skip

    reference = make()  # steps through the passes as Keras' on_epoch_end would
    expected = []
    for _ in range(3):
        expected += [reference[i][0] for i in range(len(reference))]  # 3 batches a pass
        reference.on_epoch_end()
    assert not np.array_equal(expected[0], expected[3])  # pass 1 differs from pass 0

    data, callbacks = fit_input(make())
    assert callbacks == []
    loaded = [images.numpy() for images, _ in data.take(9)]
    for step, (got, want) in enumerate(zip(loaded, expected, strict=True)):
        np.testing.assert_array_equal(got, want, err_msg=f"step {step}")
    resumed, _ = fit_input(make(), first_step=4)  # resuming after 4 steps
    for step, (images, _) in enumerate(resumed.take(2), start=4):
        np.testing.assert_array_equal(images.numpy(), expected[step])


@pytest.mark.parametrize("min_side", [200, 100])
def test_augmentation_keeps_thin_boxes_a_zoom_makes_thinner(tmp_path, min_side):
    # Two 1-px boxes and two large ones; a zoom of 0.95 makes the thin ones 0.95 px wide, which
    # the augmentation dropped (under 1 px, before the resize). Judged as the network sees
    # them (1.9 px at min side 200, 0.95 px at 100), they are the annotation's size, not a
    # sliver cut at the border: kept, as without augmentation.
    rows = ["10,10,11,40,cat", "50,60,80,61,dog", "20,20,60,60,cat", "40,30,90,90,dog"]
    csv_file, classes = write_csv_dataset(
        tmp_path, {"a.png": (Image.new("RGB", (100, 100), (90, 120, 150)), rows)}
    )
    transform = random_transform(
        flip_prob=0, scale=(0.95, 0.95), translate=0, color_jitter=False, seed=0
    )
    generator = CSVGenerator(
        csv_file, classes, transform=transform, image_min_side=min_side, image_max_side=1000
    )
    _, annotations = generator.preprocess_group([0])[:2]
    boxes = annotations[0]["bboxes"]
    assert len(boxes) == 4
    sides = (boxes[:, 2:] - boxes[:, :2]) * 100 / min_side  # back in the photo's pixels
    np.testing.assert_allclose(np.sort(sides.min(axis=1))[:2], [0.95, 0.95], rtol=1e-3)


def test_slivers_the_augmentation_cuts_at_the_border_are_dropped_by_their_network_size():
    from keras_retinanet.preprocessing.transform import kept_after_augmentation

    before = [[1, 30], [30, 30], [2, 30], [1.02, 30], [30, 30]]
    after = [[0.95, 28.5], [0.8, 30], [0.9, 30], [0.97, 29], [0.0, 30]]
    # zoomed 1-px box: kept; 30 px cut to 0.8: a sliver; 2 px cut to 0.9 (under 1 px and
    # under half): a sliver; 1.02 px zoomed to 0.97: kept; no width left: dropped.
    assert kept_after_augmentation(before, after).tolist() == [True, False, False, True, False]
    # The same boxes seen at twice the size: the 0.8 and 0.9 px slivers are 1.6 and 1.8 px.
    doubled = kept_after_augmentation(np.array(before) * 2, np.array(after) * 2)
    assert doubled.tolist() == [True, True, True, True, False]
