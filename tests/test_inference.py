"""keras_retinanet.inference: one padding rule with training, and no zero-area detection."""

import keras
import numpy as np
import pytest

from keras_retinanet.inference import detect, prepare_batch
from keras_retinanet.model.filter_detections import FilterDetections
from keras_retinanet.model.layers import ClipBoxes
from keras_retinanet.model.variants import get_variant
from keras_retinanet.preprocessing.generator import Generator
from keras_retinanet.preprocessing.image import DEFAULT_PAD_MULTIPLE, pad_batch


class FixedDetector:
    """Returns the given detections (network-input pixels) for a batch of one image."""

    def __init__(self, boxes, scores, labels):
        self.boxes = np.asarray(boxes, np.float32)[None]
        self.scores = np.asarray(scores, np.float32)[None]
        self.labels = np.asarray(labels, np.int32)[None]
        self.inputs = []

    def predict_on_batch(self, batch):
        self.inputs.append(batch)
        return self.boxes, self.scores, self.labels


def test_inference_pads_as_training_does():
    # 100 x 70 resized to min side 70: stays 100 x 70, padded to 128 x 96 (multiples of 32,
    # the training generator's default), not to 128 x 128.
    image = np.full((100, 70, 3), 200, np.uint8)
    batch, scales = prepare_batch([image], min_side=70, max_side=1000)
    assert DEFAULT_PAD_MULTIPLE == 32 and scales == [1.0]
    assert batch.shape == (1, 128, 96, 3)
    # Both take the variant's multiple unless told otherwise: 32 for ours, 1 for fizyr's.
    assert Generator.__init__.__kwdefaults__["pad_multiple"] is None
    assert get_variant(None).pad_multiple == DEFAULT_PAD_MULTIPLE
    fizyr_batch, _ = prepare_batch([image], min_side=70, max_side=1000, variant="fizyr")
    assert fizyr_batch.shape == (1, 100, 70, 3)
    # The same function builds both batches: mean subtracted in the image, zeros around it.
    np.testing.assert_array_equal(batch, pad_batch([image]))
    np.testing.assert_allclose(batch[0, 0, 0], 200 - np.array([103.939, 116.779, 123.68]))
    assert (batch[0, 100:] == 0).all() and (batch[0, :, 70:] == 0).all()


def test_detections_in_the_padding_are_dropped_not_returned_with_zero_area():
    # A 100 x 70 image in a 128 x 96 input. Detection 1 lies wholly in the padding (x from 75
    # to 90 > width 70): clipped to the image it would be a zero-width box at x = 70.
    model = FixedDetector(
        [[10, 10, 40, 40], [75, 10, 90, 40], [60, 90, 80, 120], [-1, -1, -1, -1]],
        [0.9, 0.8, 0.7, -1],
        [0, 1, 2, -1],
    )
    image = np.zeros((100, 70, 3), np.uint8)
    (found,) = detect(model, [image], min_side=70, max_side=1000)
    # Detection 2 straddles the border: clipped to (60, 90, 70, 100), it is kept.
    np.testing.assert_allclose(found.boxes, [[10, 10, 40, 40], [60, 90, 70, 100]])
    np.testing.assert_allclose(found.scores, [0.9, 0.7])
    np.testing.assert_array_equal(found.labels, [0, 2])
    widths = found.boxes[:, 2] - found.boxes[:, 0]
    heights = found.boxes[:, 3] - found.boxes[:, 1]
    assert (widths > 0).all() and (heights > 0).all()


class _Fixed(keras.layers.Layer):
    """The same tensor for every image of the batch (a detector's raw boxes or scores)."""

    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = np.asarray(value, np.float32)

    def call(self, image):
        value = keras.ops.convert_to_tensor(self.value)
        return keras.ops.broadcast_to(value[None], (keras.ops.shape(image)[0], *self.value.shape))


def fixed_detector(raw_boxes, classification) -> keras.Model:
    """An inference graph as retinanet_box builds it (canvas clip, then FilterDetections)
    around fixed raw boxes and scores."""
    image = keras.Input((None, None, 3))
    boxes = _Fixed(raw_boxes)(image)
    clipped = ClipBoxes(name="clipped_boxes")([image, boxes])
    scores = _Fixed(classification)(image)
    outputs = FilterDetections(pre_nms_top_k_per_level=None, name="filtered_detections")(
        [clipped, scores]
    )
    return keras.Model(image, list(outputs))


def test_boxes_are_clipped_to_the_image_before_nms_whatever_the_padding():
    # A 100x100 image padded to 128: raw boxes (60,10,130,50) 0.9 and (75,10,100,50) 0.8 of
    # one class overlap at IoU 0.37 on the canvas, so both would survive NMS, and come back cut
    # to (60,10,100,50) and (75,10,100,50), IoU 0.625. Clipped first, as torchvision does, the
    # second is suppressed, and the padding changes nothing.
    model = fixed_detector([[60, 10, 130, 50], [75, 10, 100, 50]], [[0.9], [0.8]])
    image = np.zeros((100, 100, 3), np.uint8)
    for pad in (1, 32, 256):
        (found,) = detect(model, [image], 100, 1000, pad_multiple=pad)
        np.testing.assert_allclose(found.boxes, [[60, 10, 100, 50]])
        np.testing.assert_allclose(found.scores, [0.9])


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="export is TensorFlow")
def test_the_exported_graph_clips_to_the_image_before_nms():
    from keras_retinanet.export.graph import detection_function

    model = fixed_detector([[60, 10, 130, 50], [75, 10, 100, 50]], [[0.9], [0.8]])
    outputs = detection_function(model, 100, 1000)(np.zeros((1, 100, 100, 3), np.uint8))
    assert int(outputs["num_detections"][0]) == 1
    np.testing.assert_allclose(outputs["boxes"][0, 0], [60, 10, 100, 50])
