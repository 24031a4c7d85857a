"""retinanet-train's options and TrainConfig: one set of defaults, and no field left behind."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from keras_retinanet.cli import train as train_cli
from keras_retinanet.training import TrainConfig
from keras_retinanet.training.config import DEFAULT_LR

ARGV = ["csv", "train.csv", "classes.csv"]


def test_the_command_line_defaults_are_train_configs():
    config = train_cli.config_from_args(train_cli.build_parser().parse_args(ARGV))
    assert config == TrainConfig(dataset=config.dataset)
    assert config.lr is None and DEFAULT_LR == 1e-5  # None: 1e-5, or a resumed snapshot's
    assert config.image_min_side == 800  # what the README promises


def test_each_option_defaults_to_its_fields_default():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    checked = []
    for action in train_cli.build_parser()._actions:
        if action.dest in fields and action.default is not argparse.SUPPRESS:
            field = fields[action.dest]
            if field.default is not dataclasses.MISSING and action.default is not None:
                assert action.default == field.default, action.dest
                checked.append(action.dest)
    # The options that carry a default (the others default to None, as their fields do).
    assert {"epochs", "batch_size", "image_max_side", "backbone", "clipnorm"} <= set(checked)


def test_options_reach_the_config():
    argv = ["--lr", "3e-4", "--epochs", "2", "--no-snapshots", "--quiet", "--seed", "5", *ARGV]
    config = train_cli.config_from_args(train_cli.build_parser().parse_args(argv))
    assert (config.lr, config.epochs, config.seed) == (3e-4, 2, 5)
    assert config.snapshot_path is None and config.verbose == 0


def test_a_new_field_without_an_option_is_not_forgotten(monkeypatch):
    @dataclasses.dataclass
    class Wider(TrainConfig):
        a_new_setting: int = 7

    monkeypatch.setattr(train_cli, "TrainConfig", Wider)
    with pytest.raises(AttributeError, match="a_new_setting"):
        train_cli.config_from_args(train_cli.build_parser().parse_args(ARGV))
