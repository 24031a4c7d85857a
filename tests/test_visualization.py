"""Tests for keras_retinanet.visualization (NumPy, OpenCV and matplotlib only; no Keras)."""

import itertools

import cv2
import numpy as np
import pytest

from keras_retinanet import visualization as vis

RED = (0, 0, 255)  # BGR


def _gray_image(height: int = 100, width: int = 120) -> np.ndarray:
    # Mid grey so that both black and white caption pixels count as changes.
    return np.full((height, width, 3), 100, dtype=np.uint8)


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(H, W) bool mask of pixels whose colour changed."""
    return np.any(before != after, axis=-1)


# --- label_color ---------------------------------------------------------------------------


def test_label_color_is_deterministic_and_distinct_for_first_20_labels():
    colors = [vis.label_color(label) for label in range(20)]
    assert colors == [vis.label_color(label) for label in range(20)]
    assert len(set(colors)) == 20
    for color in colors:
        assert len(color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color)


def _lab(colors_bgr) -> np.ndarray:
    """(N, 3) CIELAB of BGR uint8 colours (float conversion: L in [0, 100])."""
    colors = np.array(colors_bgr, dtype=np.float32).reshape(1, -1, 3) / 255
    return cv2.cvtColor(colors, cv2.COLOR_BGR2LAB)[0]


def test_label_color_palette_is_perceptually_spread():
    # Delta-E76 in CIELAB; ~2.3 is a just-noticeable difference, so >= 15 for any two of the 80
    # colours and >= 35 for labels 0..19 means clearly different hues or lightness.
    lab = _lab([vis.label_color(label) for label in range(80)])
    distance = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    pairs = list(itertools.combinations(range(80), 2))
    assert min(distance[i, j] for i, j in pairs) >= 15
    assert min(distance[i, j] for i, j in pairs if j < 20) >= 35
    assert min(distance[i, i + 1] for i in range(79)) >= 20  # neighbouring labels


def test_label_color_palette_avoids_reserved_colors():
    # Detections must not look like ground truth (green), padding (grey), or vanish on a white
    # or black background.
    lab = _lab([vis.label_color(label) for label in range(80)])
    reserved = _lab([(0, 255, 0), vis.PADDING_COLOR, (255, 255, 255), (0, 0, 0)])
    distance = np.linalg.norm(lab[:, None] - reserved[None], axis=-1)
    assert distance.min() >= 20
    assert 30 <= lab[:, 0].min() and lab[:, 0].max() <= 85


def test_label_color_wraps_and_greys_out_padding():
    assert vis.label_color(80) == vis.label_color(0)
    assert vis.label_color(np.int64(3)) == vis.label_color(3)
    assert vis.label_color(-1) == vis.PADDING_COLOR == (128, 128, 128)
    assert vis.PADDING_COLOR not in {vis.label_color(label) for label in range(80)}


# --- draw_box / draw_boxes -----------------------------------------------------------------


def test_draw_box_changes_edge_pixels_only():
    image = np.zeros((60, 60, 3), dtype=np.uint8)
    vis.draw_box(image, (10.2, 20.0, 40.0, 50.4), RED, thickness=1)
    # Rounded box is x 10..40, y 20..50; thickness 1 draws exactly the edge pixels.
    assert tuple(image[35, 10]) == RED  # left edge, mid-height
    assert tuple(image[20, 25]) == RED  # top edge
    assert tuple(image[50, 40]) == RED  # bottom-right corner
    changed = np.any(image != 0, axis=-1)
    assert not changed[21:50, 11:40].any()  # interior untouched
    outside = np.ones_like(changed)
    outside[20:51, 10:41] = False
    assert not changed[outside].any()


def test_draw_box_thickness_stays_near_the_edge():
    image = np.zeros((60, 60, 3), dtype=np.uint8)
    vis.draw_box(image, (10, 10, 40, 40), RED)  # default thickness 2: edge +- 1 px
    changed = np.any(image != 0, axis=-1)
    assert changed[25, 9] and changed[25, 10] and changed[25, 11]
    assert not changed[13:38, 13:38].any()
    near = np.zeros_like(changed)
    near[7:44, 7:44] = True
    assert not changed[~near].any()


def test_draw_box_rejects_unusable_images():
    with pytest.raises(ValueError, match="uint8"):
        vis.draw_box(np.zeros((10, 10, 3), dtype=np.float32), (1, 1, 5, 5), RED)
    with pytest.raises(ValueError, match="ascontiguousarray"):
        vis.draw_box(np.zeros((10, 10, 3), dtype=np.uint8)[:, ::-1], (1, 1, 5, 5), RED)


def test_draw_box_draws_through_a_crop_view():
    # A crop is a strided view OpenCV can draw on in place; it must not be rejected.
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    vis.draw_box(image[10:30, 20:40], (0, 0, 5, 5), RED, thickness=1)
    assert tuple(image[10, 20]) == RED  # crop origin (0, 0) is image pixel (20, 10)
    assert not image[:10].any()


def test_draw_boxes_draws_every_box_and_accepts_none():
    image = np.zeros((60, 60, 3), dtype=np.uint8)
    vis.draw_boxes(image, np.array([[5, 5, 15, 15], [30, 30, 50, 50]]), RED, thickness=1)
    assert tuple(image[10, 5]) == RED and tuple(image[40, 30]) == RED
    empty = np.zeros((60, 60, 3), dtype=np.uint8)
    vis.draw_boxes(empty, np.zeros((0, 4)), RED)
    assert not empty.any()


# --- draw_caption --------------------------------------------------------------------------


def test_caption_at_top_edge_is_drawn_whole_inside_the_image():
    # A caption drawn in the middle of the image is never clipped; one at the top edge (and
    # the right edge) must change exactly as many pixels, i.e. it was moved, not cut off.
    reference = _gray_image()
    before = reference.copy()
    vis.draw_caption(reference, (20, 60, 50, 90), "person: 0.87")
    full_count = _changed(before, reference).sum()
    assert full_count > 0

    for box in [(20, 0, 50, 30), (110, 0, 119, 30), (-30, -30, 10, 10)]:
        image = _gray_image()
        vis.draw_caption(image, box, "person: 0.87")
        changed = _changed(before, image)
        assert changed.sum() == full_count, box
        assert changed[:5].any(), box  # the caption sits against the top edge


def test_caption_goes_above_the_box_when_there_is_room():
    image = _gray_image()
    before = image.copy()
    vis.draw_caption(image, (20, 60, 50, 90), "cat")
    rows = np.flatnonzero(_changed(before, image).any(axis=1))
    assert rows.max() < 60 and rows.min() > 30


def test_caption_text_contrasts_with_its_background():
    for background in [(0, 0, 0), (255, 255, 255), vis.label_color(9)]:
        image = _gray_image()
        vis.draw_caption(image, (20, 60, 50, 90), "dog", color=background)
        region = image[:60, 20:60].reshape(-1, 3).astype(int)
        # Background fill plus text drawn in a far-away colour.
        luma = region @ np.array([0.114, 0.587, 0.299])
        assert luma.max() - luma.min() > 150, background


# --- draw_detections -----------------------------------------------------------------------

BOXES = np.array([[10, 40, 50, 80], [60, 40, 100, 90]], dtype=np.float32)


def test_draw_detections_below_threshold_draws_nothing():
    image = _gray_image()
    before = image.copy()
    vis.draw_detections(image, BOXES, np.array([0.49, 0.1]), np.array([0, 1]))
    assert np.array_equal(image, before)


def test_draw_detections_above_threshold_draws_in_label_color():
    image = _gray_image()
    vis.draw_detections(image, BOXES, np.array([0.51, 0.2]), np.array([3, 1]))
    assert tuple(image[60, 10]) == vis.label_color(3)  # left edge of the first box
    assert tuple(image[60, 60]) == (100, 100, 100)  # second box is below the threshold


def test_draw_detections_keeps_what_the_model_keeps_at_the_threshold():
    # One rule for a score everywhere (DetectionSettings): kept when strictly above. A score
    # of exactly the default 0.5 is not drawn, as the graph and detect() would not keep it.
    image = _gray_image()
    before = image.copy()
    vis.draw_detections(image, BOXES[:1], np.array([0.5]), np.array([3]))
    assert np.array_equal(image, before)


def test_draw_detections_skips_padding_whatever_the_threshold():
    image = _gray_image()
    before = image.copy()
    padded = np.full((3, 4), -1.0)
    vis.draw_detections(image, padded, np.full(3, -1.0), np.full(3, -1), score_threshold=-5.0)
    assert np.array_equal(image, before)

    # A real detection among padding is still drawn.
    boxes = np.concatenate([BOXES[:1], padded])
    vis.draw_detections(image, boxes, np.array([0.9, -1, -1, -1]), np.array([2, -1, -1, -1]))
    assert tuple(image[60, 10]) == vis.label_color(2)


def test_draw_detections_uses_given_color_and_names():
    named, numbered = _gray_image(), _gray_image()
    args = (BOXES[:1], np.array([0.87]), np.array([0]))
    vis.draw_detections(named, *args, label_to_name={0: "a long class name"}, color=RED)
    vis.draw_detections(numbered, *args, label_to_name=lambda label: str(label), color=RED)
    assert tuple(named[60, 10]) == RED
    # "a long class name: 0.87" needs a wider caption than "0: 0.87".
    assert _changed(numbered, named)[:40].any()
    assert not np.array_equal(named, numbered)


def test_draw_detections_explains_batched_input():
    with pytest.raises(ValueError, match=r"boxes\[0\]"):
        vis.draw_detections(_gray_image(), BOXES[None], np.ones((1, 2)), np.zeros((1, 2)))


# --- draw_annotations ----------------------------------------------------------------------


def test_draw_annotations_dashes_difficult_boxes():
    # 84 px wide: not a whole number of 10 px dash periods, so the dashes must be spread.
    box = np.array([[20, 40, 103, 90]], dtype=np.float32)
    solid, dashed = _gray_image(), _gray_image()
    vis.draw_annotations(solid, {"bboxes": box, "labels": np.array([0])})
    vis.draw_annotations(
        dashed,
        {"bboxes": box, "labels": np.array([0]), "difficult": np.array([True])},
        label_to_name={0: "cat"},
    )
    green = np.array([0, 255, 0])
    bottom_solid = np.all(solid[90, 20:104] == green, axis=-1)
    bottom_dashed = np.all(dashed[90, 20:104] == green, axis=-1)
    right_dashed = np.all(dashed[40:91, 103] == green, axis=-1)
    assert bottom_solid.all()
    # Dashes of 6 px on, about 4 px off: roughly 60 % of the edge is drawn, with gaps.
    assert 0.5 < bottom_dashed.mean() < 0.75
    assert 0.5 < right_dashed.mean() < 0.8
    # Every edge starts and ends with a dash, so all four corners are drawn.
    assert bottom_dashed[0] and bottom_dashed[-1] and right_dashed[0] and right_dashed[-1]
    # Same thickness as the solid outline: the pixel just outside the edge is drawn too.
    assert np.all(dashed[91, 20] == green) and np.all(solid[91, 20] == green)


def test_outlines_never_cross_captions():
    # The second box's outline passes through where the first box's caption goes; captions
    # are drawn after all outlines, so the caption region holds no outline colour.
    boxes = np.array([[20, 50, 90, 90], [40, 20, 110, 95]], dtype=np.float32)
    image = _gray_image()
    vis.draw_detections(image, boxes, np.array([0.6, 0.9]), np.array([0, 1]))
    caption_area = image[35:49, 20:60].reshape(-1, 3)
    outline = np.array(vis.label_color(1))
    assert not np.any(np.all(caption_area == outline, axis=-1))
    assert np.any(np.all(image[60:80, 40] == outline, axis=-1))  # the outline is drawn


def test_draw_annotations_skips_padding_and_checks_keys():
    image = _gray_image()
    before = image.copy()
    vis.draw_annotations(image, {"bboxes": np.full((2, 4), -1.0), "labels": np.array([-1, -1])})
    assert np.array_equal(image, before)
    with pytest.raises(KeyError, match="labels"):
        vis.draw_annotations(image, {"bboxes": np.zeros((1, 4))})


# --- plots ---------------------------------------------------------------------------------


def _write_log(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def test_plot_training_log_writes_png(tmp_path):
    header = ["epoch", "classification_loss", "loss", "lr", "mAP", "regression_loss", "val_loss"]
    rows = [[e, 1.0 / (e + 1), 2.0 / (e + 1), 1e-5, "NA" if e % 2 else 0.1 * e, 1.0, 2.5]
            for e in range(6)]  # fmt: skip
    log = _write_log(tmp_path / "log.csv", header, rows)
    output = vis.plot_training_log(log, tmp_path / "curves.png")
    assert output == str(tmp_path / "curves.png")
    image = cv2.imread(output)
    assert image is not None
    assert (image < 200).any(axis=-1).mean() > 0.01  # curves, axes and text, not a blank page

    # Without an mAP column only the loss panel is drawn, so the figure is shorter.
    no_map = _write_log(
        tmp_path / "no_map.csv", ["epoch", "loss"], [[e, 1.0 / (e + 1)] for e in range(3)]
    )
    short = cv2.imread(vis.plot_training_log(no_map, tmp_path / "short.png"))
    assert short.shape[0] < image.shape[0]


def test_plot_training_log_rejects_missing_and_empty_logs(tmp_path):
    with pytest.raises(ValueError, match="missing.csv"):
        vis.plot_training_log(tmp_path / "missing.csv", tmp_path / "out.png")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty.csv"):
        vis.plot_training_log(empty, tmp_path / "out.png")
    header_only = _write_log(tmp_path / "header.csv", ["epoch", "loss"], [])
    with pytest.raises(ValueError, match="header.csv"):
        vis.plot_training_log(header_only, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


def test_plot_focal_loss_writes_png(tmp_path):
    figure = vis.plot_focal_loss(tmp_path / "focal.png")
    assert len(figure.axes[0].get_lines()) == 5  # one curve per default gamma
    image = cv2.imread(str(tmp_path / "focal.png"))
    assert image is not None and image.shape[0] > 100
    # gamma = 0 is cross entropy: -log(0.1) at p_t = 0.1.
    p_t, loss = figure.axes[0].get_lines()[0].get_data()
    assert np.interp(0.1, p_t, loss) == pytest.approx(-np.log(0.1), rel=1e-3)
    with pytest.raises(ValueError, match="gammas"):
        vis.plot_focal_loss(gammas=(-1,))
