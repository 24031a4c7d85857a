"""The benchmarks' rounds: alternating model order and pooling of the timings."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_inference = pytest.importorskip("bench_inference")


def _spec(label, size):
    return {"title": f"{label} {size}", "model": label.lower(), "label": label, "jit": False,
            "batch": 1, "height": size, "width": size, "prior": 0.5}  # fmt: skip


def test_rounds_alternate_which_model_runs_first():
    specs = [_spec("ours", 64), _spec("KerasHub", 64), _spec("ours", 96), _spec("KerasHub", 96)]
    ordered = bench_inference.in_rounds(specs, 3)
    assert len(ordered) == 12
    labels = [(s["round"], s["height"], s["label"]) for s in ordered]
    assert labels[:4] == [(0, 64, "ours"), (0, 64, "KerasHub"), (0, 96, "ours"),
                          (0, 96, "KerasHub")]  # fmt: skip
    assert labels[4:8] == [(1, 64, "KerasHub"), (1, 64, "ours"), (1, 96, "KerasHub"),
                           (1, 96, "ours")]  # fmt: skip
    assert [label for _, _, label in labels[8:10]] == ["ours", "KerasHub"]
    assert all("round" in s["title"] for s in ordered)


def test_merge_pools_raw_timings_and_keeps_per_round_medians():
    def result(label, round_index, totals, first, peak):
        return dict(_spec(label, 64), round=round_index, totals=totals, first=first,
                    rss_peak=peak, rss_built=100.0)  # fmt: skip

    results = [
        result("ours", 0, [1.0, 2.0, 3.0], 10.0, 500.0),
        result("KerasHub", 0, [2.0, 2.0, 2.0], 8.0, 400.0),
        result("KerasHub", 1, [4.0, 4.0, 4.0], 9.0, 450.0),
        result("ours", 1, [5.0, 6.0, 7.0], 12.0, 450.0),
        dict(_spec("ours", 96), error="boom"),
    ]
    merged = {(r["label"], r["height"]): r for r in
              bench_inference.merge_rounds(results, {"totals": "total"})}  # fmt: skip
    ours, theirs = merged[("ours", 64)], merged[("KerasHub", 64)]
    assert ours["totals"] == [1.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    assert ours["total"]["median"] == pytest.approx(4.0)
    assert ours["round_medians"] == {0: 2.0, 1: 6.0} and ours["rounds"] == 2
    assert ours["first"] == pytest.approx(11.0) and ours["rss_peak"] == 500.0
    assert theirs["rss_peak"] == 450.0 and theirs["total"]["median"] == pytest.approx(3.0)
    assert merged[("ours", 96)]["error"] == "boom"
    # Per-round ratios: 2/2 = 1.00 and 6/4 = 1.50.
    assert bench_inference.round_ratio_range(ours, theirs) == "1.00-1.50"
    assert bench_inference.round_ratio_range({"round_medians": {0: 1.0}}, theirs) == "-"
