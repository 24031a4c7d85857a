"""The package's layout rules (shared/STYLE.md, "Layout"), read from the source with ``ast``:
imports run one way between tiers, every import inside a function says why, no module is
over 400 lines, and the old module paths still import."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "keras_retinanet"

# Rank of each tier: a module may import its own tier and the ones of lower rank, never a
# higher rank, nor another tier of the same rank (training and evaluation stay independent).
TIERS = {
    "model": 0,
    "quiet": 0,
    "_compat": 0,
    "errors": 0,
    "preprocessing": 1,
    "datasets": 1,
    "visualization": 1,
    "models": 6,  # the public names users import (from_preset downloads through convert/)
    "inference": 2,
    "coverage": 2,
    "learned": 3,
    "class_names": 1,
    "evaluation": 3,
    "export": 3,
    "convert": 3,
    "training": 4,
    "predict": 4,
    "debug": 4,
    "demo": 5,
    "cli": 6,
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        yield path, parts


def _tier(parts: tuple[str, ...]) -> str | None:
    return parts[0] if parts and parts[0] != "__init__" else None


def _imports(tree: ast.AST):
    """(node, dotted name below keras_retinanet, inside a function?) for each package import."""
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef)
    functions = [n for n in ast.walk(tree) if isinstance(n, kinds)]
    inside = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "keras_retinanet":
                for alias in node.names:
                    yield node, alias.name, id(node) in inside
            elif node.module.startswith("keras_retinanet."):
                yield node, node.module.split(".", 1)[1], id(node) in inside
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("keras_retinanet."):
                    yield node, alias.name.split(".", 1)[1], id(node) in inside


def test_every_top_level_module_has_a_tier():
    names = {parts[0] for _, parts in _modules() if parts[0] != "__init__"}
    assert names <= set(TIERS), f"give these a tier in TIERS: {sorted(names - set(TIERS))}"


def test_imports_run_one_way_between_tiers():
    upward = []
    for path, parts in _modules():
        own = _tier(parts)
        if own is None:
            continue  # keras_retinanet/__init__.py: registers the saved classes
        tree = ast.parse(path.read_text())
        for node, target, _ in _imports(tree):
            other = target.split(".")[0]
            if other == own or other not in TIERS:
                continue
            if TIERS[other] > TIERS[own] or (TIERS[other] == TIERS[own]):
                upward.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports {target}")
    assert not upward, "imports against the tiers:\n" + "\n".join(upward)


def test_the_model_tier_imports_nothing_above_it():
    # The rule above, stated for the tier everything else stands on.
    for path, parts in _modules():
        if parts[0] != "model":
            continue
        for node, target, _ in _imports(ast.parse(path.read_text())):
            assert target.startswith("model"), f"{path}:{node.lineno} imports {target}"


def test_every_import_inside_a_function_says_why():
    silent = []
    for path, _ in _modules():
        lines = path.read_text().splitlines()
        tree = ast.parse("\n".join(lines))
        for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                before = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                text = "\n".join(lines[node.lineno - 1 : node.end_lineno])
                if "#" not in text and not before.startswith("#"):
                    silent.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not silent, "imports inside functions without a one-line reason:\n" + "\n".join(silent)


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(PACKAGE)): n
        for path, _ in _modules()
        if (n := len(path.read_text().splitlines())) > 400
    }
    assert not long, long


def test_the_checker_finds_an_upward_import():
    # The import walk above must see a nested import, or the tier test checks nothing.
    tree = ast.parse("def f():\n    from keras_retinanet.cli import train  # x\n")
    assert [(t, i) for _, t, i in _imports(tree)] == [("cli", True)]


@pytest.mark.parametrize(
    "old", ["anchors", "layers", "losses", "boxes", "variants", "backbones", "fold", "saving"]
)
def test_old_module_paths_are_the_moved_modules(old):
    moved = importlib.import_module(f"keras_retinanet.model.{old}")
    assert importlib.import_module(f"keras_retinanet.{old}") is moved
    from keras_retinanet import models

    assert models.retinanet_model.__module__ == "keras_retinanet.model.retinanet"
    renamed = importlib.import_module("keras_retinanet.export.convert")
    assert renamed is importlib.import_module("keras_retinanet.export.inference_model")


def test_a_model_saved_before_the_model_tier_loads_and_detects_the_same():
    # tests/data/pre_model_tier.keras was written by the code before the move (its config
    # names keras_retinanet.layers, .losses and .filter_detections; see its recipe).
    import zipfile

    import numpy as np

    from keras_retinanet import models

    path = Path(__file__).parent / "data" / "pre_model_tier.keras"
    config = zipfile.ZipFile(path).read("config.json").decode()
    assert '"module": "keras_retinanet.layers"' in config
    expected = models.read_metadata(str(path))["expected"]
    assert len(expected["scores"]) >= 3
    data = importlib.import_module("data.make_pre_model_tier")
    for model in (models.load_model(str(path), compile=True), keras_load(path)):
        *_, boxes, scores, labels = model.predict_on_batch(data.sample_input())
        keep = np.asarray(labels)[0] >= 0
        np.testing.assert_array_equal(np.asarray(labels)[0][keep], expected["labels"])
        np.testing.assert_allclose(np.asarray(scores)[0][keep], expected["scores"], atol=1e-5)
        np.testing.assert_allclose(np.asarray(boxes)[0][keep], expected["boxes"], atol=1e-3)


def keras_load(path: Path):
    import keras

    return keras.saving.load_model(path)  # no custom_objects: the names are registered
