import pytest

from anomed.config import RunConfig, apply_overrides, from_dict, load_yaml, save_yaml, to_dict
from anomed.errors import AnomedError


def test_yaml_round_trip(tmp_path):
    cfg = RunConfig(method="mediclip", method_args={"temperature": 0.07})
    cfg.data.k = 4
    cfg.backbone.image_size = 240
    save_yaml(tmp_path / "c.yaml", cfg)
    assert from_dict(RunConfig, load_yaml(tmp_path / "c.yaml")) == cfg


def test_dotted_overrides_parse_yaml_values():
    data = apply_overrides(
        to_dict(RunConfig()),
        ["train.epochs=3", "method_args.layers=[6, 12]", "backbone.pretrained=null"],
    )
    cfg = from_dict(RunConfig, data)
    assert cfg.train.epochs == 3 and cfg.method_args["layers"] == [6, 12]
    assert cfg.backbone.pretrained is None


def test_unknown_key_is_named():
    with pytest.raises(
        AnomedError, match=r"unknown TrainConfig keys \['train.epoch'\] \(did you mean 'epochs'\?\)"
    ):
        from_dict(RunConfig, {"train": {"epoch": 3}})


def test_override_without_equals_is_an_error():
    with pytest.raises(AnomedError, match="expected key=value"):
        apply_overrides({}, ["train.epochs"])


def test_a_folder_given_as_config_says_so(tmp_path):
    with pytest.raises(AnomedError, match="a folder, not a config file. Fix: pass the YAML file"):
        load_yaml(tmp_path)
