"""Installation of keras_retinanet: `pip install .` (add `[tests]` for the test suite)."""

from setuptools import find_packages, setup

setup(
    name="keras-retinanet",
    version="0.1.0",
    description="RetinaNet object detection for Keras 3 (TensorFlow, JAX and PyTorch backends)",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["keras_retinanet", "keras_retinanet.*"]),
    include_package_data=True,
    install_requires=[
        "keras>=3.6",
        "numpy>=1.23",
        "opencv-python-headless>=4.8",
        "lxml>=4.9",
        "matplotlib>=3.7",
        "pillow>=9.5",
        "h5py>=3.8",
        "albumentations>=2.0",
        "tqdm>=4.60",
    ],
    extras_require={
        # TensorFlow is the default backend; JAX/PyTorch users install those instead.
        "tensorflow": ["tensorflow>=2.16", "tensorboard>=2.16"],
        "coco": ["pycocotools>=2.0.7"],
        # ONNX export and its runtime; SavedModel and TFLite need only TensorFlow.
        "export": ["tf2onnx>=1.17", "onnx>=1.16", "onnxruntime>=1.18"],
        "tests": [
            "pytest>=7",
            "pytest-xdist>=3.5",  # scripts/run_tests.sh runs the suite on 2 processes
            "pycocotools>=2.0.7",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6.25",
            "ruff>=0.6",
            "hypothesis>=6.100",  # the annotation and image readers' fuzz tests
            # The ONNX export test (its detections and metadata) and
            # tests/test_benchmark_tools.py's profile of a tiny ONNX graph.
            "tf2onnx>=1.17",
            "onnx>=1.16",
            "onnxruntime>=1.18",
        ],
    },
    entry_points={
        "console_scripts": [
            "retinanet-train=keras_retinanet.cli.train:main",
            "retinanet-evaluate=keras_retinanet.cli.evaluate:main",
            "retinanet-predict=keras_retinanet.cli.predict:main",
            "retinanet-debug=keras_retinanet.cli.debug:main",
            "retinanet-anchors=keras_retinanet.cli.anchors:main",
            "retinanet-convert=keras_retinanet.cli.convert:main",
            "retinanet-export=keras_retinanet.cli.export:main",
            "retinanet-demo=keras_retinanet.demo:main",
            "retinanet-download=keras_retinanet.datasets.voc:main",
        ]
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Image Recognition",
    ],
)
