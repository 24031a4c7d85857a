"""Throughput of the Pascal VOC generator, as ``model.fit`` drives it.

Runs the generator through Keras' own ``PyDataset`` machinery (the adapter ``fit`` uses, with
its thread or process pool) and prints images/second for each worker setting::

    python benchmarks/bench_loader.py                       # bccd, 800/1333, 1 and 2 workers
    python benchmarks/bench_loader.py --images 100 --transform --processes

Each row builds a fresh generator, decodes one batch in the main process to warm up (imports,
anchor cache), then times ``--images`` images. A batch is: read JPEG, filter boxes, augment
(with ``--transform``), resize, subtract the mean, pad, and assign anchor targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bccd"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA), help="VOC-layout dataset")
    parser.add_argument("--set-name", default="trainval")
    parser.add_argument("--images", type=int, default=80, help="images timed per row")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--min-side", type=int, default=800)
    parser.add_argument("--max-side", type=int, default=1333)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--transform", action="store_true", help="add random_transform()")
    parser.add_argument(
        "--processes", action="store_true", help="also time use_multiprocessing=True"
    )
    return parser.parse_args(argv)


def time_generator(
    args: argparse.Namespace, workers: int, processes: bool
) -> tuple[int, float, float]:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    from keras_retinanet.preprocessing.transform import random_transform
    from keras_retinanet.preprocessing.voc import PascalVocGenerator

    generator = PascalVocGenerator(
        args.data_dir,
        args.set_name,
        classes=os.path.join(args.data_dir, "classes.txt"),
        batch_size=args.batch_size,
        image_min_side=args.min_side,
        image_max_side=args.max_side,
        transform=random_transform(seed=0) if args.transform else None,
        seed=0,
        workers=workers,
        use_multiprocessing=processes,
        max_queue_size=10,
    )
    generator[0]  # warm up in this process: lazy imports and the anchor cache
    batches = max(1, min(len(generator), args.images // args.batch_size))
    adapter = PyDatasetAdapter(generator, shuffle=False)
    images = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    adapter.on_epoch_begin()
    for index, (inputs, _) in enumerate(adapter.get_numpy_iterator()):
        images += len(inputs)
        if index + 1 >= batches:
            break
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    adapter.on_epoch_end()
    return images, elapsed, cpu


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    warnings.simplefilter("ignore")  # bccd's two zero-area boxes warn on every build
    rows = []
    for workers in args.workers:
        modes = [False, True] if args.processes else [False]
        for processes in modes:
            images, elapsed, cpu = time_generator(args, workers, processes)
            rows.append((workers, "processes" if processes else "threads", images, elapsed, cpu))

    dataset = os.path.basename(os.path.normpath(args.data_dir))
    print(
        f"\nPascalVocGenerator on {dataset}/{args.set_name}, {args.min_side}/{args.max_side}, "
        f"batch {args.batch_size}, transform {'on' if args.transform else 'off'}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| workers | pool      | images | seconds | images/s | CPU ms/image |")
    print("|--------:|-----------|-------:|--------:|---------:|-------------:|")
    for workers, pool, images, elapsed, cpu in rows:
        rate = images / elapsed
        # CPU time of this process: the workers' too for threads, not for processes.
        cpu_text = f"{1000 * cpu / images:12.0f}" if pool == "threads" else f"{'-':>12s}"
        cells = f"{workers:7d} | {pool:9s} | {images:6d} | {elapsed:7.2f} | {rate:8.1f}"
        print(f"| {cells} | {cpu_text} |")
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\nload average after the run (1, 5, 15 min): {load}; other work on the machine")
    print("slows every row, so compare rows of one run.")


if __name__ == "__main__":
    main()
