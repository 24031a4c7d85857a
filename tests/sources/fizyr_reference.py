"""Reference outputs of fizyr keras-retinanet 1.0.0 (keras-resnet 0.1.0), for
tests/test_convert_fizyr.py.

Runs with fizyr's package on PYTHONPATH (``pip install --no-deps --target DIR
keras-retinanet==1.0.0 keras-resnet==0.1.0``) in a Python with TensorFlow and ``tf_keras``
(Keras 2, which fizyr's code was written for). Two patches, both here and not in fizyr's
files: keras-resnet 0.1.0 imports standalone ``keras``, pointed at ``tf_keras``; and its
BatchNormalization passes ``training`` twice on Keras >= 2.3, so its ``call`` is replaced by
one that passes it once (frozen: inference mode, as keras-resnet means it).

Builds ``resnet{50,101,152}_retinanet`` with random weights and BatchNorm statistics, saves
the training snapshot as fizyr does (``model.save(.h5)``, Keras 2 names ``kernel:0``), builds
fizyr's inference model (``retinanet_bbox``), runs both on an image and writes
``OUT/reference.npz``.

Usage: python fizyr_reference.py IMAGE.npy OUT_DIR [--backbone resnet50] [--num-classes 4]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np  # noqa: E402
import tf_keras  # noqa: E402

sys.modules["keras"] = tf_keras  # keras-resnet 0.1.0: "import keras.layers"
for _name in ("layers", "backend", "models", "regularizers", "initializers", "utils"):
    sys.modules[f"keras.{_name}"] = getattr(tf_keras, _name)

import keras_resnet.layers  # noqa: E402


def _frozen_call(self, inputs, training=None, **kwargs):
    return tf_keras.layers.BatchNormalization.call(self, inputs, training=not self.freeze)


keras_resnet.layers.BatchNormalization.call = _frozen_call

from keras_retinanet import models  # noqa: E402  (fizyr's package, from PYTHONPATH)


def randomise(model, image: np.ndarray, rng: np.random.Generator) -> None:
    """He-normal convs, random BatchNorm statistics near unit scale, and the last head convs
    rescaled so class scores spread around 0.03 and box deltas stay small."""
    for layer in model.layers:
        for sub in getattr(layer, "layers", [layer]):
            weights = sub.get_weights()
            if not weights:
                continue
            if isinstance(sub, tf_keras.layers.BatchNormalization):
                c = weights[0].shape
                sub.set_weights(
                    [
                        rng.uniform(0.5, 1.0, c),
                        rng.normal(0, 0.1, c),
                        rng.normal(0, 0.1, c),
                        rng.uniform(0.5, 1.5, c),
                    ]
                )
            else:
                kernel = weights[0]
                fan_in = np.prod(kernel.shape[:-1])
                new = [rng.normal(0, np.sqrt(1.0 / fan_in), kernel.shape)]
                new += [rng.normal(0, 0.1, w.shape) for w in weights[1:]]
                sub.set_weights(new)
    for _ in range(2):  # twice: saturated sigmoids make the first estimate of the scale rough
        regression, classification = model.predict_on_batch(image)
        for submodel, output, scale, bias in (
            ("classification_submodel", classification, 1.0, -3.5),
            ("regression_submodel", regression, 0.3, 0.0),
        ):
            last = model.get_layer(submodel).get_layer("pyramid_" + submodel.split("_")[0])
            kernel, old_bias = last.get_weights()
            if submodel.startswith("class"):
                output = np.clip(output, 1e-6, 1 - 1e-6)
                output = np.log(output / (1 - output))
            factor = scale / max((output - old_bias.mean()).std(), 1e-6)
            last.set_weights([kernel * factor, bias + rng.normal(0, 0.2, old_bias.shape)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("image", help=".npy uint8 RGB image (H, W, 3)")
    parser.add_argument("out")
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photo", help="also detect in this photo with fizyr's own resizing")
    parser.add_argument("--photo-sides", type=int, nargs=2, default=(480, 800))
    args = parser.parse_args()
    rgb = np.load(args.image)
    bgr = rgb[..., ::-1].astype(np.float32)
    image = (bgr - np.array([103.939, 116.779, 123.68], np.float32))[None]  # fizyr "caffe"
    model = models.backbone(args.backbone).retinanet(num_classes=args.num_classes)
    randomise(model, image, np.random.default_rng(args.seed))
    os.makedirs(args.out, exist_ok=True)
    model.save(os.path.join(args.out, "model.h5"))
    regression, classification = model.predict_on_batch(image)
    inference = models.convert_model(model)
    inference.save(os.path.join(args.out, "inference.h5"))  # what retinanet-convert-model writes
    boxes, scores, labels = inference.predict_on_batch(image)
    full = {}
    if args.photo:  # fizyr's README snippet: read, preprocess, resize, predict, boxes / scale
        from keras_retinanet.utils.image import preprocess_image, read_image_bgr, resize_image

        photo = preprocess_image(read_image_bgr(args.photo))
        photo, scale = resize_image(photo, *args.photo_sides)
        found = inference.predict_on_batch(photo[None])
        full = {
            "full_boxes": found[0][0] / scale,
            "full_scores": found[1][0],
            "full_labels": found[2][0],
        }
    np.savez(
        os.path.join(args.out, "reference.npz"),
        **full,
        regression=regression[0],
        classification=classification[0],
        boxes=boxes[0],
        scores=scores[0],
        labels=labels[0],
    )


if __name__ == "__main__":
    main()
