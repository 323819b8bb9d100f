"""`--model local-dir:PATH`: folders laid out as a user's open_clip hf-hub download (BiomedCLIP-
and SigLIP-shaped, written here from the tiny configs), loaded offline; one-line errors for a
missing weights, tokenizer or text-model config file."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import open_clip
import pytest
import torch
from safetensors.torch import save_file

from anomed.backbone import BackboneConfig, load_backbone
from anomed.backbone.loading import ASSET_DIR
from anomed.errors import AnomedError

# what the downloaded configs name (never fetched: the folder holds what they point to)
HUB_NAMES = {
    "anomed-tiny-biomedclip": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
    "anomed-tiny-siglip": "timm/ViT-B-16-SigLIP",
}
PREPROCESS = {"mean": [0.25, 0.5, 0.75], "std": [0.5, 0.5, 0.5]}  # the folder's own


def write_download(folder: Path, shape: str) -> torch.nn.Module:
    """An open_clip hf-hub folder of the tiny `shape`: config, safetensors, tokenizer files and
    (BiomedCLIP) the BERT config.json; returns the source backbone."""
    src = load_backbone(BackboneConfig(model=shape, init_seed=5))
    folder.mkdir(parents=True)
    cfg = copy.deepcopy(open_clip.get_model_config(shape))
    text = cfg["text_cfg"]
    text["hf_tokenizer_name"] = HUB_NAMES[shape]
    if "hf_model_name" in text:
        text["hf_model_name"] = HUB_NAMES[shape]
        shutil.copy(ASSET_DIR / "tiny-bert" / "config.json", folder / "config.json")
    config = {"model_cfg": cfg, "preprocess_cfg": PREPROCESS}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    state = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(ASSET_DIR / "tiny-bert" / name, folder / name)
    return src


@pytest.mark.parametrize("shape", list(HUB_NAMES))
def test_a_downloaded_folder_loads_offline_and_gives_the_same_features(shape, tmp_path):
    src = write_download(tmp_path / "dl", shape)
    bb = load_backbone(BackboneConfig(model=f"local-dir:{tmp_path / 'dl'}"))
    images, texts = torch.rand(1, 3, 224, 224), ["a photo of a brain", "lesion"]
    with torch.no_grad():
        ours = bb.encode_image(images, [6]).image_embedding
        torch.testing.assert_close(ours, src.model.encode_image(bb.normalize(images)))
        torch.testing.assert_close(bb.encode_text(texts), src.encode_text(texts))
    assert bb.pixel_mean.flatten().tolist() == PREPROCESS["mean"]  # from the folder's config


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        ("open_clip_model.safetensors", "no weights file"),
        ("vocab.txt", "no tokenizer file"),
        ("config.json", "names the Hugging Face text model 'microsoft/BiomedNLP"),
        ("open_clip_config.json", "open_clip_config.json: missing"),
    ],
)
def test_a_missing_file_is_one_line_naming_it(remove, message, tmp_path):
    write_download(tmp_path / "dl", "anomed-tiny-biomedclip")
    (tmp_path / "dl" / remove).unlink()
    with pytest.raises(AnomedError, match=message) as err:
        load_backbone(BackboneConfig(model=f"local-dir:{tmp_path / 'dl'}"))
    assert "\n" not in str(err.value) and "Fix:" in str(err.value)


def test_the_text_model_config_may_sit_in_a_text_subfolder(tmp_path):
    write_download(tmp_path / "dl", "anomed-tiny-biomedclip")
    (tmp_path / "dl" / "text").mkdir()
    shutil.move(tmp_path / "dl" / "config.json", tmp_path / "dl" / "text" / "config.json")
    bb = load_backbone(BackboneConfig(model=f"local-dir:{tmp_path / 'dl'}"))
    assert bb.text.kind == "hf-text"


@pytest.mark.parametrize(
    ("shape", "method"), [("anomed-tiny-siglip", "mediclip"), ("anomed-tiny-biomedclip", "mvfa")]
)
def test_anomed_train_runs_on_a_local_dir(shape, method, phantom_root, tmp_path):
    from anomed.cli import main

    write_download(tmp_path / "dl", shape)
    args = ["-q", "train", "--data", str(phantom_root), "--model", f"local-dir:{tmp_path / 'dl'}"]
    args += ["--method", method, "--k", "2", "--epochs", "1", "--image-size", "112"]
    args += ["--abnormal-from-test", "--output", str(tmp_path / "run")]
    assert main(args) == 0
    assert (tmp_path / "run" / "config.yaml").is_file()
