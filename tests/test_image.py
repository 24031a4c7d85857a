"""Tests for keras_retinanet.preprocessing.image: reading awkward files, caffe preprocessing and
the resize scale."""

import numpy as np
import pytest
from PIL import Image

from keras_retinanet.preprocessing.image import (
    CAFFE_MEAN_BGR,
    ImageReadError,
    compute_resize_scale,
    preprocess_image,
    read_image_bgr,
    resize_image,
    try_read_image_bgr,
)

# 2 x 3 RGB test pattern: red, green, blue / white, black, grey.
PATTERN_RGB = np.array(
    [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [128, 128, 128]]],
    dtype=np.uint8,
)


def test_png_with_jpg_name_is_read_by_content(tmp_path):
    path = tmp_path / "actually_a_png.jpg"
    Image.fromarray(PATTERN_RGB).save(path, format="PNG")
    image = read_image_bgr(str(path))
    assert image.dtype == np.uint8 and image.shape == (2, 3, 3)
    # Lossless PNG: exact pixels, channels reversed to BGR (red (255, 0, 0) -> (0, 0, 255)).
    np.testing.assert_array_equal(image, PATTERN_RGB[:, :, ::-1])
    assert image.flags["C_CONTIGUOUS"]


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    image = read_image_bgr(str(path))
    assert image.shape == (3, 4, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], gray)


def test_16_bit_grayscale_keeps_its_contrast(tmp_path):
    # 16-bit values 0, 5000, ..., 55000 map to 8 bits by / 257 (65535 -> 255):
    # 5000 / 257 = 19.5, 55000 / 257 = 214.0. A plain convert("RGB") would clip them all to 255.
    gray16 = (np.arange(12, dtype=np.uint16) * 5000).reshape(3, 4)
    path = tmp_path / "gray16.png"
    Image.fromarray(gray16).save(path)
    image = read_image_bgr(str(path))
    assert image.shape == (3, 4, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image[:, :, 0].astype(float), gray16 / 257.0, atol=1.0)
    assert image[2, 3, 0] < 255 and image[0, 1, 0] < 30


def test_rgba_alpha_is_dropped(tmp_path):
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # red
    rgba[..., 3] = [[0, 64], [128, 255]]  # any alpha, including fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    image = read_image_bgr(str(path))
    assert image.shape == (2, 2, 3)
    np.testing.assert_array_equal(image.reshape(-1, 3), [[0, 0, 255]] * 4)  # BGR red


def test_palette_png(tmp_path):
    indices = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    palette_image = Image.fromarray(indices, mode="P")
    # Palette: 0 -> red, 1 -> green, 2 -> (10, 20, 30).
    palette_image.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    path = tmp_path / "palette.png"
    palette_image.save(path)
    assert Image.open(path).mode == "P"
    image = read_image_bgr(str(path))
    np.testing.assert_array_equal(image[0, 0], [0, 0, 255])
    np.testing.assert_array_equal(image[0, 1], [0, 255, 0])
    np.testing.assert_array_equal(image[1, 0], [30, 20, 10])


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, left half red, right half blue, with EXIF orientation 6
    # ("rotate 90 degrees clockwise to display"): shown 20 wide x 40 high with the red half on
    # top (the stored left edge becomes the top edge).
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = [255, 0, 0]
    stored[:, 20:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    image = read_image_bgr(str(path)).astype(int)
    assert image.shape == (40, 20, 3)
    # JPEG is lossy: compare away from the colour edge with a tolerance. BGR order.
    np.testing.assert_allclose(image[5, 10], [0, 0, 255], atol=40)  # red on top
    np.testing.assert_allclose(image[35, 10], [255, 0, 0], atol=40)  # blue below


def test_cmyk_jpeg_becomes_three_channels(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (4, 3), (0, 255, 255, 0)).save(path)  # CMYK red
    image = read_image_bgr(str(path)).astype(int)
    assert image.shape == (3, 4, 3)
    np.testing.assert_allclose(image[1, 1], [0, 0, 255], atol=40)


def test_truncated_jpeg_raises_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "truncated.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        read_image_bgr(str(path))
    assert str(path) in str(info.value)
    # try_read_image_bgr warns with the same message and returns None.
    with pytest.warns(UserWarning, match="truncated.jpg"):
        assert try_read_image_bgr(str(path)) is None


def test_not_an_image_and_missing_file(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match="notes.jpg"):
        read_image_bgr(str(text))
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageReadError, match="missing.png"):
        read_image_bgr(str(missing))
    assert issubclass(ImageReadError, OSError)


def test_preprocess_image_subtracts_the_bgr_mean():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    image[0, 0] = [104, 117, 124]  # BGR, close to the mean
    original = image.copy()
    out = preprocess_image(image)
    assert out.dtype == np.float32 and out.shape == (2, 2, 3)
    # 104 - 103.939 = 0.061, 117 - 116.779 = 0.221, 124 - 123.68 = 0.32.
    np.testing.assert_allclose(out[0, 0], [0.061, 0.221, 0.32], atol=1e-4)
    np.testing.assert_allclose(out[1, 1], [-103.939, -116.779, -123.68], atol=1e-4)
    np.testing.assert_array_equal(image, original)  # input untouched
    batch = preprocess_image(np.stack([image, image]))  # also on (B, H, W, 3)
    assert batch.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(batch[1], out)
    assert CAFFE_MEAN_BGR == (103.939, 116.779, 123.68)


def test_preprocess_float_input_is_not_modified():
    image = np.full((1, 1, 3), 200.0, dtype=np.float32)
    out = preprocess_image(image)
    assert out is not image
    np.testing.assert_array_equal(image, 200.0)


@pytest.mark.parametrize(
    "rows, cols, min_side, max_side, expected_scale, expected_shape",
    [
        # 500 wide x 375 high: short side to 800 -> 800 / 375 = 2.1333; long side
        # 500 * 2.1333 = 1066.7 <= 1333, kept; round(1066.67) = 1067 columns.
        (375, 500, 800, 1333, 800 / 375, (800, 1067)),
        # 1000 wide x 400 high: 800 / 400 = 2 would make the long side 2000 > 1333, so the long
        # side goes to 1333: scale 1.333, 400 * 1.333 = 533.2 -> 533 rows.
        (400, 1000, 800, 1333, 1333 / 1000, (533, 1333)),
        # Downscale: 1600 x 1200 -> 800 / 1200 = 0.6667, long side 1066.7.
        (1200, 1600, 800, 1333, 800 / 1200, (800, 1067)),
        # Small test sizes: 200 x 300 with 96 / 128: 96 / 200 = 0.48 gives 144 > 128, so
        # 128 / 300 = 0.42667 -> (85.3, 128) -> (85, 128).
        (200, 300, 96, 128, 128 / 300, (85, 128)),
        # Portrait: 640 high x 480 wide with 96 / 160: 96 / 480 = 0.2, 640 * 0.2 = 128 <= 160.
        (640, 480, 96, 160, 0.2, (128, 96)),
    ],
)
def test_resize_image_scales(rows, cols, min_side, max_side, expected_scale, expected_shape):
    image = np.zeros((rows, cols, 3), dtype=np.uint8)
    assert compute_resize_scale(image.shape, min_side, max_side) == pytest.approx(expected_scale)
    resized, scale = resize_image(image, min_side=min_side, max_side=max_side)
    assert scale == pytest.approx(expected_scale)
    assert resized.shape == expected_shape + (3,)
    assert resized.dtype == np.uint8


def test_resize_at_scale_one_returns_the_image_and_keeps_content():
    image = np.arange(96 * 128 * 3, dtype=np.uint32).reshape(96, 128, 3).astype(np.uint8)
    resized, scale = resize_image(image, min_side=96, max_side=128)
    assert scale == 1.0 and resized.shape == image.shape
    np.testing.assert_array_equal(resized, image)
    # A uniform colour survives a real resize unchanged.
    flat = np.full((50, 60, 3), (10, 20, 30), dtype=np.uint8)
    resized, scale = resize_image(flat, min_side=100, max_side=1000)
    assert scale == 2.0 and resized.shape == (100, 120, 3)
    assert (resized == (10, 20, 30)).all()
