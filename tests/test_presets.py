"""Presets: data tables resolved into method configs and run-level defaults."""

import pytest

from anomed.config import RunConfig
from anomed.engine.run import resolve_preset
from anomed.errors import AnomedError
from anomed.methods import METHODS, method_config_dict
from anomed.methods.base import PRESETS, run_defaults


def test_reference_preset_sets_the_switches_and_explicit_args_win():
    cfg = method_config_dict("mvfa", {}, "reference")
    assert cfg["map_order"] == "upsample_softmax" and cfg["normalization"] == "test"
    assert cfg["batch_size"] == 1 and cfg["det_loss"] == "bce_logits"
    mine = method_config_dict("mvfa", {"normalization": "val"}, "reference")
    assert mine["normalization"] == "val" and mine["det_loss"] == "bce_logits"


def test_every_preset_table_names_real_fields_with_valid_values():
    for name in METHODS:
        for preset in PRESETS:
            method_config_dict(name, {}, preset)  # from_dict checks names and Literal values
            assert set(run_defaults(name, preset)) == {"backbone.preprocess", "train.select"}


def test_a_typo_in_a_switch_value_fails_with_the_field_name():
    with pytest.raises(AnomedError, match="method_args.map_order"):
        method_config_dict("mvfa", {"map_order": "upsample-softmax"})


def test_run_level_defaults_fill_only_unset_fields():
    ppad = resolve_preset(RunConfig(method="ppad", preset="reference"))
    assert ppad.train.select == "last" and ppad.backbone.preprocess == "cxr"
    mine = RunConfig(method="mvfa", preset="reference")
    mine.backbone.preprocess = "clip"
    resolve_preset(mine)
    assert mine.backbone.preprocess == "clip" and mine.train.select == "val"
    default = resolve_preset(RunConfig(method="mediclip"))
    assert (default.backbone.preprocess, default.train.select) == ("clip", "val")
