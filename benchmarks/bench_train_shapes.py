"""Learning benchmark: train on the synthetic shapes dataset on this CPU and report mAP@0.5.

Runs the same pipeline as ``retinanet-demo`` (random backbone weights, no download) for a
wall-clock budget and prints one row per epoch: elapsed time, losses, learning rate and the
VOC07 mAP@0.5 on the held-out split. Then the final evaluation of the best snapshot.

    python benchmarks/bench_train_shapes.py --minutes 20 --output-dir /tmp/shapes_bench
"""

from __future__ import annotations

import json
import os
import platform
import sys

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)


def main(argv: list[str] | None = None) -> None:
    from keras_retinanet import demo

    parser = demo.build_parser()
    parser.set_defaults(minutes=20.0, output_dir="/tmp/retinanet_shapes_bench", quiet=True)
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    summary = demo.run_demo(args)

    log = os.path.join(args.output_dir, "snapshots", "training_log.jsonl")
    with open(log) as f:
        records = [json.loads(line) for line in f]
    print(
        f"\nshapes benchmark on {platform.machine()} with {os.cpu_count()} CPUs, python "
        f"{sys.version.split()[0]}; {args.minutes:g} min budget, batch {args.batch_size}, "
        f"{args.image_side}px, lr {args.lr:g}, weights {args.weights}"
    )
    print(f"{'epoch':>5} {'minutes':>8} {'loss':>8} {'cls':>8} {'reg':>8} {'lr':>9} {'mAP@0.5':>8}")
    for r in records:
        print(
            f"{r['epoch']:>5} {r['seconds'] / 60:>8.1f} {r.get('loss', float('nan')):>8.4f} "
            f"{r.get('classification_loss', float('nan')):>8.4f} "
            f"{r.get('regression_loss', float('nan')):>8.4f} "
            f"{r.get('learning_rate', float('nan')):>9.2e} {r.get('mAP', float('nan')):>8.3f}"
        )
    print(f"\nbest snapshot {summary['snapshot']}: mAP@0.5 = {summary['mAP']:.3f}")
    for name, ap in summary["average_precisions"].items():
        print(f"  {name:<10} AP {ap:.3f}")


if __name__ == "__main__":
    main()
