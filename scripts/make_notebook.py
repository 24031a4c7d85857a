"""Write ``notebooks/retinanet_demo.ipynb`` from the cells below (run after editing them).

The notebook is stored without outputs; ``tests/test_notebook.py`` executes it with small
settings. Usage::

    python scripts/make_notebook.py            # writes notebooks/retinanet_demo.ipynb
    python scripts/make_notebook.py --check    # exit 1 if the stored notebook is out of date
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "retinanet_demo.ipynb"

# The project's GitHub repository, "owner/name": the Colab badge and the install cell use it.
GITHUB_REPO = "ORG/keras_retinanet"  # placeholder until the repository is public


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str, **metadata) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(textwrap.dedent(text).strip())
    cell.metadata.update(metadata)
    return cell


CELLS = [
    md(
        f"""
        # RetinaNet in Keras 3, step by step

        [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/notebooks/retinanet_demo.ipynb)

        This notebook builds a RetinaNet detector (Lin et al. 2017, *Focal Loss for Dense
        Object Detection*) with `keras_retinanet`, piece by piece, trains it and runs it:

        1. hyperparameters
        2. the ResNet50 backbone
        3. the RetinaNet model: feature pyramid (FPN) and the two subnets
        4. `retinanet_box`: anchors, box regression and clipping, detection filtering (NMS)
        5. the losses: focal loss and smooth L1
        6. the dataset (Pascal VOC layout)
        7. training
        8. detection demo

        It runs on an embedded synthetic *shapes* dataset (no download), or on Pascal VOC2007
        when `VOC2007_PATH` is set below. On Colab, pick a GPU runtime
        (*Runtime > Change runtime type*) and run all cells.
        """
    ),
    code(
        f"""
        # On Colab, install keras_retinanet from GitHub; elsewhere install it with pip first.
        import subprocess
        import sys

        REPO_URL = "https://github.com/{GITHUB_REPO}"
        if "google.colab" in sys.modules:
            command = [sys.executable, "-m", "pip", "install", "-q", f"git+{{REPO_URL}}"]
            subprocess.run(command, check=True)
        """
    ),
    md(
        """
        ## 1. Hyperparameters

        Everything the rest of the notebook uses is set here. `SMALL` (set by the test suite
        through `RETINANET_NOTEBOOK_SMALL=1`) shrinks images, data and training so that the whole
        notebook runs in a couple of minutes on a CPU; the detector then learns nothing useful.
        """
    ),
    code(
        """
        import os
        from pathlib import Path

        from keras_retinanet.model.anchors import AnchorParameters

        SMALL = os.environ.get("RETINANET_NOTEBOOK_SMALL") == "1"
        VOC2007_PATH = None  # e.g. "/content/VOCdevkit/VOC2007" to train on Pascal VOC2007
        WORK_DIR = Path("retinanet_demo")  # generated data, snapshots and pictures

        # Backbone weights: "imagenet" (downloaded by keras.applications, ~95 MB) or None.
        WEIGHTS = None if SMALL else "imagenet"
        # Image size: the shorter side is resized to IMAGE_MIN_SIDE unless the longer one would
        # exceed IMAGE_MAX_SIDE. 800/1333 for VOC; the shapes images are 256x256.
        IMAGE_MIN_SIDE, IMAGE_MAX_SIDE = (
            (128, 128) if SMALL else (800, 1333) if VOC2007_PATH else (256, 256)
        )
        BATCH_SIZE = 1 if SMALL else 2
        EPOCHS = 1 if SMALL else 20
        STEPS_PER_EPOCH = 2 if SMALL else 100
        # Adam. 1e-5 is the usual rate from ImageNet weights; the small shapes problem takes 1e-4.
        LEARNING_RATE = 1e-5 if VOC2007_PATH else 1e-4
        NUM_TRAIN, NUM_TEST = (8, 4) if SMALL else (200, 40)  # shapes dataset size
        SCORE_THRESHOLD = 0.5  # detections shown in the demo
        # Compiling the training step into a graph takes minutes on a CPU: more than a few
        # steps are worth. The SMALL run trains eagerly.
        RUN_EAGERLY = SMALL

        # Anchors: areas 32^2..512^2 on pyramid levels P3..P7 (strides 8..128), three aspect
        # ratios and three octave scales per level, so A = 9 anchors per location (sec. 4).
        anchor_parameters = AnchorParameters()
        POSITIVE_OVERLAP, NEGATIVE_OVERLAP = 0.5, 0.4  # anchor IoU: fg >= 0.5, bg < 0.4
        FOCAL_ALPHA, FOCAL_GAMMA = 0.25, 2.0  # focal loss, table 1a of the paper
        SMOOTH_L1_SIGMA = 3.0  # smooth L1 switches from quadratic to linear at 1 / sigma^2
        PRIOR_PROBABILITY = 0.01  # initial foreground score of every anchor (sec. 4.1)

        print("SMALL:", SMALL, "| data:", VOC2007_PATH or "synthetic shapes")
        print(anchor_parameters)
        print("anchors per location:", anchor_parameters.num_anchors)
        """,
        tags=["parameters"],
    ),
    code(
        """
        # ruff: noqa: UP032  (the detection snippet keeps the str.format users copy)
        %matplotlib inline
        import matplotlib.pyplot as plt
        import numpy as np
        from IPython.display import Image, display

        from keras_retinanet.datasets.shapes import SHAPE_CLASSES
        from keras_retinanet.preprocessing.voc import VOC_CLASSES

        WORK_DIR.mkdir(parents=True, exist_ok=True)
        CLASSES = list(VOC_CLASSES if VOC2007_PATH else SHAPE_CLASSES)


        def show(*images_bgr, titles=None, size=5):
            \"\"\"Show BGR uint8 images side by side.\"\"\"
            figure, axes = plt.subplots(
                1, len(images_bgr), figsize=(size * len(images_bgr), size), squeeze=False
            )
            for ax, image, title in zip(axes[0], images_bgr, titles or [None] * len(images_bgr)):
                ax.imshow(image[..., ::-1])
                ax.axis("off")
                if title:
                    ax.set_title(title)
            plt.show()
        """
    ),
    md(
        """
        ## 2. The ResNet50 backbone

        RetinaNet uses the ResNet feature maps C3, C4 and C5 (strides 8, 16, 32), taken from
        `keras.applications.ResNet50` at the outputs of its stages 2, 3 and 4. Images are BGR
        with the ImageNet mean subtracted (Caffe convention), as the ImageNet weights expect.
        Detection trains with one or two images per device, too few for batch statistics, so
        BatchNormalization stays frozen.
        """
    ),
    code(
        """
        import keras

        from keras_retinanet.model import backbones

        inputs = keras.Input(shape=(IMAGE_MAX_SIDE, IMAGE_MAX_SIDE, 3))
        c3, c4, c5 = backbones.backbone_features(inputs, "resnet50", weights=None)
        for name, feature in zip(("C3", "C4", "C5"), (c3, c4, c5)):
            stride = IMAGE_MAX_SIDE // feature.shape[1]
            print(f"{name}: {tuple(feature.shape)}  stride {stride}")
        """
    ),
    md(
        """
        ## 3. The RetinaNet model: feature pyramid and subnets

        The FPN turns C3..C5 into P3..P7 with 256 channels each: P5..P3 top-down (1x1 lateral
        convs plus upsampled coarser levels), P6 a stride-2 conv on C5 and P7 one on ReLU(P6).
        Two small fully convolutional subnets, shared by all levels, predict for each of the A
        anchors at every location: the classification subnet K class probabilities (sigmoid,
        its last bias set so that every anchor starts at `PRIOR_PROBABILITY`), the regression
        subnet 4 box deltas. `retinanet_model` returns this **training model**: outputs
        `regression (B, N, 4)` and `classification (B, N, K)` over all N anchors.
        """
    ),
    code(
        """
        from keras_retinanet import models
        from keras_retinanet.model.anchors import num_anchors_for_shape

        model = models.retinanet_model(
            num_classes=len(CLASSES),
            weights=WEIGHTS,
            anchor_parameters=anchor_parameters,
            prior_probability=PRIOR_PROBABILITY,
        )
        print(f"{model.count_params():,} parameters")
        for level in anchor_parameters.pyramid_levels:
            print(f"P{level}: {tuple(model.get_layer(f'P{level}').output.shape)}")

        batch = np.zeros((1, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE, 3), dtype=np.float32)
        regression, classification = model.predict_on_batch(batch)
        n = num_anchors_for_shape(batch.shape[1:3], anchor_parameters)
        print("regression", regression.shape, "classification", classification.shape, "N =", n)
        print(f"initial scores: mean {classification.mean():.4f} (prior {PRIOR_PROBABILITY})")
        """
    ),
    md(
        """
        ## 4. `retinanet_box`: anchors, regression and clipping, filtering

        The inference model wraps the training model: it lays out the anchors of every level,
        applies the regression deltas to them, clips the boxes to the image and keeps the best
        detections per class with non-maximum suppression.

        **Anchors.** At each pyramid level, A = 9 anchors (3 ratios x 3 scales) of base size
        32..512 are centred on every cell of the feature map. Below: the 9 anchors of each level,
        centred in a 512x512 image, one colour per level.
        """
    ),
    code(
        """
        import cv2

        from keras_retinanet.model.anchors import generate_anchors
        from keras_retinanet.visualization import draw_box, label_color

        canvas = np.full((512, 512, 3), 235, dtype=np.uint8)
        for index, size in enumerate(anchor_parameters.sizes):
            base = generate_anchors(size, anchor_parameters.ratios, anchor_parameters.scales)
            for anchor in base + 256:  # centred on (256, 256)
                draw_box(canvas, anchor, label_color(index), thickness=1)
        show(canvas, titles=["base anchors of P3 (blue) .. P7, centred"], size=6)
        """
    ),
    md(
        """
        **Regression and clipping.** The network predicts, per anchor, normalised offsets of
        the box corners relative to the anchor size: `t_x1 = (x1 - a_x1) / a_w` and so on,
        divided by 0.2. `bbox_transform` encodes a box, `bbox_transform_inv` decodes it; decoding
        the encoding returns the box. Decoded boxes are then clipped to the image.
        """
    ),
    code(
        """
        from keras_retinanet.model.boxes import bbox_transform, bbox_transform_inv, clip_boxes

        anchor = np.array([[100.0, 100.0, 164.0, 164.0]], dtype=np.float32)
        box = np.array([[90.0, 110.0, 180.0, 150.0]], dtype=np.float32)
        deltas = bbox_transform(anchor, box)
        print("deltas:", deltas.round(3))
        print("decoded:", bbox_transform_inv(anchor, deltas).round(3))
        print("clipped to 128x128:", clip_boxes(np.array([[-5.0, 20.0, 140.0, 90.0]]), 128, 128))
        """
    ),
    md(
        """
        **Filtering.** `FilterDetections` keeps the top candidates above a score threshold,
        runs NMS per class and returns a fixed number of rows, sorted by score and padded with
        -1. The anchors inside the inference model come from the same function as those the
        data loader assigns targets to; the check below compares them.
        """
    ),
    code(
        """
        from keras_retinanet.model.anchors import anchors_for_shape

        prediction_model = models.retinanet_box(
            model, anchor_parameters=anchor_parameters, score_threshold=0.05, max_detections=100
        )
        boxes, scores, labels = prediction_model.predict_on_batch(batch)
        print("boxes", boxes.shape, "scores", scores.shape, "labels", labels.shape, labels.dtype)
        print("valid rows:", int((labels[0] >= 0).sum()), "(untrained: scores near the prior)")

        anchors_model = keras.Model(
            prediction_model.inputs, prediction_model.get_layer("anchors").output
        )
        graph_anchors = anchors_model.predict_on_batch(batch)[0]
        loader_anchors = anchors_for_shape(batch.shape[1:3], anchor_parameters)
        same = np.allclose(graph_anchors, loader_anchors)
        print("same anchors in the graph and the loader:", same)
        """
    ),
    md(
        """
        ## 5. The losses

        Among ~100k anchors, a few dozen are positive; the easy negatives would swamp
        cross-entropy. The **focal loss** `-alpha_t (1 - p_t)^gamma log(p_t)` scales each term
        down by how well it is already classified (gamma = 0 is cross-entropy), and the sum is
        divided by the number of positive anchors. Boxes are regressed with **smooth L1** on
        the positive anchors. The curve reproduces Fig. 1 of the paper.
        """
    ),
    code(
        """
        from keras_retinanet.model import losses
        from keras_retinanet.visualization import plot_focal_loss

        plot_focal_loss(WORK_DIR / "focal_loss.png")
        display(Image(filename=str(WORK_DIR / "focal_loss.png")))

        # One positive anchor (class 0, state 1), one easy negative, one ignored (state -1).
        y_true = np.array([[[1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, -1]]], dtype=np.float32)
        y_pred = np.array([[[0.9, 0.1, 0.1], [0.05, 0.1, 0.2], [0.9, 0.9, 0.9]]], np.float32)
        focal = losses.focal(alpha=FOCAL_ALPHA, gamma=FOCAL_GAMMA)
        cross_entropy = losses.focal(alpha=FOCAL_ALPHA, gamma=0.0)
        print(
            f"focal {float(focal(y_true, y_pred)):.4f} vs alpha-weighted cross-entropy "
            f"{float(cross_entropy(y_true, y_pred)):.4f}"
        )
        """
    ),
    md(
        """
        ## 6. The dataset

        Data in Pascal VOC layout (`Annotations/*.xml`, `JPEGImages/`, `ImageSets/Main/*.txt`)
        is read by `PascalVocGenerator`, a `keras.utils.PyDataset`: each batch is augmented,
        resized, mean-subtracted, padded, and comes with the anchor targets the losses need.
        Without `VOC2007_PATH`, a synthetic dataset of rectangles, ellipses and triangles is
        written in the same layout.

        The picture shows what `retinanet-debug` draws: the positive anchors of a training image
        (thin) and its ground truth (green); boxes that no anchor fits with IoU >= 0.5 would be
        red.
        """
    ),
    code(
        """
        from keras_retinanet.datasets.shapes import write_shapes_dataset
        from keras_retinanet.debug import analyze_coverage, draw_coverage, image_coverage
        from keras_retinanet.preprocessing.transform import random_transform
        from keras_retinanet.preprocessing.voc import PascalVocGenerator

        if VOC2007_PATH:
            data_dir, classes, train_set, test_set = VOC2007_PATH, VOC_CLASSES, "trainval", "test"
        else:
            data_dir = write_shapes_dataset(
                WORK_DIR / "shapes",
                num_train=NUM_TRAIN,
                num_test=NUM_TEST,
                image_size=(128, 128) if SMALL else (256, 256),
                shape_size=(32, 80) if SMALL else (30, 120),
            )
            classes, train_set, test_set = data_dir / "classes.txt", "trainval", "test"

        common = dict(
            classes=classes,
            image_min_side=IMAGE_MIN_SIDE,
            image_max_side=IMAGE_MAX_SIDE,
            anchor_parameters=anchor_parameters,
        )
        train_generator = PascalVocGenerator(
            data_dir, train_set, batch_size=BATCH_SIZE, transform=random_transform(seed=0), **common
        )
        test_generator = PascalVocGenerator(data_dir, test_set, shuffle=False, **common)
        print(f"{train_generator.size()} training and {test_generator.size()} test images")

        inputs, (regression_targets, classification_targets) = train_generator[0]
        print("inputs", inputs.shape)
        print("regression targets", regression_targets.shape)
        print("classification targets", classification_targets.shape)
        print("positive anchors in the batch:", int((regression_targets[..., 4] == 1).sum()))

        images, annotations, _ = train_generator.preprocess_group([0])
        coverage = image_coverage(
            images[0],
            annotations[0],
            train_generator.num_classes(),
            anchor_parameters,
            padded_shape=train_generator.padded_shape(images),
        )
        picture = draw_coverage(coverage, train_generator.classes)
        show(picture, titles=["positive anchors and ground truth"], size=6)
        print(analyze_coverage(train_generator, limit=50, progress=False).format())
        """
    ),
    md(
        """
        ## 7. Training

        Adam with gradient clipping, smooth L1 on `regression` and focal loss on
        `classification`, from the generator with `model.fit`. The `retinanet-train`
        command does the same with snapshots, evaluation and logging.
        """
    ),
    code(
        """
        from keras_retinanet.training import compile_model, fit_input

        compile_model(model, lr=LEARNING_RATE)
        model.run_eagerly = RUN_EAGERLY
        # fit_input: on TensorFlow, feeds the batches through tf.data with a dynamic image
        # shape (Keras would otherwise fix it from the first two batches).
        data, data_callbacks = fit_input(train_generator)
        history = model.fit(
            data,
            epochs=EPOCHS,
            steps_per_epoch=min(STEPS_PER_EPOCH, len(train_generator)),
            callbacks=data_callbacks,
            verbose=2,
        )

        plt.figure(figsize=(6, 4))
        for key, values in history.history.items():
            if key.endswith("loss"):
                plt.plot(range(1, len(values) + 1), values, marker="o", label=key)
        plt.xlabel("epoch")
        plt.ylabel("loss")
        plt.legend()
        plt.title("training loss")
        plt.show()

        snapshot_path = WORK_DIR / "snapshots" / "resnet50_demo.keras"
        models.save_model(
            model,
            str(snapshot_path),
            metadata={
                "classes": list(train_generator.classes),
                "num_classes": train_generator.num_classes(),
                "backbone": "resnet50",
                "anchor_parameters": anchor_parameters.to_dict(),
                "image_min_side": IMAGE_MIN_SIDE,
                "image_max_side": IMAGE_MAX_SIDE,
                "epoch": EPOCHS,
                "model": "training",
            },
        )
        print("snapshot:", snapshot_path)
        """
    ),
    md(
        """
        ## 8. Detection demo

        Load the snapshot as an inference model (`convert=True` adds anchors, decoding and NMS)
        and its class names. The next cell is the usual snippet: run the network on one
        preprocessed, resized image and draw each detection scoring at least 0.5 on it, in the
        network's pixels.
        """
    ),
    code(
        """
        from keras_retinanet.preprocessing.image import (
            CAFFE_MEAN_BGR,
            preprocess_image,
            read_image_bgr,
            resize_image,
        )
        from keras_retinanet.visualization import draw_caption, label_color

        prediction_model = models.load_model(str(snapshot_path), convert=True)
        labels_to_names = dict(enumerate(models.read_metadata(str(snapshot_path))["classes"]))

        image = read_image_bgr(test_generator.image_path(0))
        image = preprocess_image(image)
        image, scale = resize_image(image, min_side=IMAGE_MIN_SIDE, max_side=IMAGE_MAX_SIDE)
        """
    ),
    code(
        """
        boxes, scores, labels = prediction_model.predict_on_batch(np.expand_dims(image, axis=0))
        for box, score, label in zip(boxes[0], scores[0], labels[0]):
            if score < 0.5:
                break
            color = label_color(label)
            b = box.astype(int)
            cv2.rectangle(image, (b[0], b[1]), (b[2], b[3]), color, 2, cv2.LINE_AA)
            caption = "{} {:.3f}".format(labels_to_names[label], score)
            draw_caption(image, b, caption)

        # The snippet drew on the network input; add the mean back to look at it.
        show(np.clip(image + CAFFE_MEAN_BGR, 0, 255).astype(np.uint8), titles=["snippet"])
        """
    ),
    md(
        """
        For whole images at their original size, `keras_retinanet.inference.detect` resizes,
        pads and batches, and returns boxes in original pixels; `draw_detections` draws them.
        Ground truth in green. `retinanet-predict MODEL FOLDER` does this for folders of images
        and writes the detections to JSON.
        """
    ),
    code(
        """
        from keras_retinanet.inference import detect
        from keras_retinanet.visualization import draw_annotations, draw_detections

        count = min(4, test_generator.size())
        originals = [test_generator.load_image(i) for i in range(count)]
        results = detect(prediction_model, originals, IMAGE_MIN_SIDE, IMAGE_MAX_SIDE)
        pictures = []
        for index, (picture, result) in enumerate(zip(originals, results)):
            picture = picture.copy()
            ground_truth = test_generator.load_annotations(index)
            draw_annotations(picture, ground_truth, label_to_name=labels_to_names)
            draw_detections(
                picture,
                result.boxes,
                result.scores,
                result.labels,
                label_to_name=labels_to_names,
                score_threshold=SCORE_THRESHOLD,
            )
            pictures.append(picture)
            kept = int((result.scores >= SCORE_THRESHOLD).sum())
            print(f"{test_generator.image_path(index)}: {kept} detection(s) >= {SCORE_THRESHOLD}")
        show(*pictures, titles=[f"test image {i}" for i in range(count)], size=4)
        """
    ),
    md(
        """
        ## 9. A pretrained COCO detector

        No training: torchvision's COCO RetinaNet v2 (41.5 AP on COCO val2017), downloaded from
        its publisher, converted once into a snapshot of this package (the outputs equal
        torchvision's, see `tests/test_convert_torchvision.py`) and run on a photo. This needs
        the network, so it runs on Colab; offline (as in the test run) the cell says so and
        skips. `retinanet-convert --pretrained torchvision_v2_coco` does the same from a shell,
        and `retinanet-train --weights <snapshot>` fine-tunes it on your classes.
        """
    ),
    code(
        """
        from keras_retinanet.convert import download_pretrained

        PRETRAINED = "torchvision_v2_coco"  # or torchvision_v1_coco, fizyr_resnet50_coco
        PHOTO_URL = "http://images.cocodataset.org/val2017/000000039769.jpg"
        if "google.colab" in sys.modules:
            coco_path = download_pretrained(PRETRAINED)
            coco_model = models.load_model(coco_path, convert=True)
            coco_names = dict(enumerate(models.read_metadata(coco_path)["classes"]))
            photo = read_image_bgr(keras.utils.get_file("coco_photo.jpg", PHOTO_URL))
            (found,) = detect(coco_model, [photo], 800, 1333)
            draw_detections(
                photo, found.boxes, found.scores, found.labels,
                label_to_name=coco_names, score_threshold=0.5,
            )
            for score, label in zip(found.scores, found.labels):
                if score >= 0.5:
                    print(f"{coco_names[int(label)]}: {score:.2f}")
            show(photo, titles=[PRETRAINED], size=8)
        else:
            print(f"offline: skipped downloading {PRETRAINED} (runs on Colab)")
        """
    ),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = CELLS
    notebook.metadata.update(
        {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "colab": {"provenance": []},
            "accelerator": "GPU",
        }
    )
    for index, cell in enumerate(notebook.cells):
        cell["id"] = f"cell-{index:02d}"  # stable ids: regenerating gives the same file
    nbformat.validate(notebook)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    text = nbformat.writes(build()) + "\n"
    if args.check:
        current = NOTEBOOK.read_text(encoding="utf-8") if NOTEBOOK.is_file() else ""
        if current != text:
            print(f"{NOTEBOOK} is out of date; run python scripts/make_notebook.py")
            return 1
        return 0
    NOTEBOOK.parent.mkdir(parents=True, exist_ok=True)
    NOTEBOOK.write_text(text, encoding="utf-8")
    print(f"wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
