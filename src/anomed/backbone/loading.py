"""Building the frozen model: open_clip names, `local-dir:` folders, `timm:` image towers.

The one place where weights are read (and, for hub names, fetched). A `local-dir:` folder is
what a user has after downloading an open_clip hf-hub repository elsewhere: open_clip_config.json,
a weights file and, when the text tower is a Hugging Face model, its tokenizer files and the
text model's config.json (in the folder, a subfolder, or where the config's name points).
Nothing in that case touches the network, and a missing file is one line naming it.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

import open_clip
import torch
from torch import nn

from anomed.backbone import tiny_towers
from anomed.backbone.weights_file import check_weights_file
from anomed.config import BackboneConfig
from anomed.errors import AnomedError

CONFIG_DIR = Path(__file__).parent / "model_configs"
ASSET_DIR = Path(__file__).parent / "assets"  # tiny tokenizer + text configs ("anomed:NAME")
ASSET_PREFIX = "anomed:"
WEIGHT_FILES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "spiece.model", "tokenizer.model")
# the tiny SigLIP shapes normalise as SigLIP's published weights do (no pretrained tag to ask)
TINY_PREPROCESS = {
    "anomed-tiny-siglip": ((0.5,) * 3, (0.5,) * 3),
    "anomed-tiny-siglip2": ((0.5,) * 3, (0.5,) * 3),
}

_configs_registered = False


def register_model_configs() -> None:
    """Make the project's tiny random-init configs (and their timm towers) known (idempotent)."""
    global _configs_registered
    if not _configs_registered:
        tiny_towers.register()
        open_clip.add_model_config(CONFIG_DIR)
        _configs_registered = True


def asset_path(name: str) -> str:
    """'anomed:tiny-bert' -> the folder shipped in the package; other names unchanged."""
    return str(ASSET_DIR / name[len(ASSET_PREFIX) :]) if name.startswith(ASSET_PREFIX) else name


def _unknown_model_error(name: str) -> AnomedError:
    close = difflib.get_close_matches(name, open_clip.list_models(), n=4, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return AnomedError(
        f"unknown open_clip model {name!r}.{hint} Fix: pick a name from "
        "`python -c 'import open_clip; print(open_clip.list_models())'`, an 'hf-hub:org/repo' id, "
        "'local-dir:/path' holding open_clip_config.json + weights, or 'timm:NAME' (image only)."
    )


def _fetch_error(cfg: BackboneConfig, exc: Exception) -> AnomedError:
    return AnomedError(
        f"could not fetch pretrained weights for {cfg.model!r} (pretrained={cfg.pretrained!r}): "
        f"{type(exc).__name__}: {str(exc)[:300]}. This machine may be offline. Fix: download the "
        "checkpoint where there is internet (e.g. `open_clip.create_model(...)` caches it under "
        "~/.cache/huggingface) and pass the file: "
        "`--pretrained /path/to/open_clip_model.safetensors` (safetensors only), "
        "or use `--model local-dir:/path` with a folder of config + weights."
    )


def create_clip(cfg: BackboneConfig) -> nn.Module:
    """Build the model described by `cfg`; the one place where weights are fetched."""
    register_model_configs()
    name = cfg.model
    if name.startswith("local-dir:"):
        return _create_local(cfg, Path(name[len("local-dir:") :]).expanduser())
    if name.startswith("timm:"):
        return _create_timm(cfg, name[len("timm:") :])
    is_hub = name.startswith("hf-hub:")
    model_cfg = None if is_hub else open_clip.get_model_config(name)
    if not is_hub and model_cfg is None:
        raise _unknown_model_error(name)
    pretrained = cfg.pretrained
    if pretrained and not is_hub and Path(pretrained).suffix and not Path(pretrained).exists():
        raise AnomedError(f"{pretrained}: no such checkpoint file. Fix: check the path.")
    if pretrained and not is_hub and Path(pretrained).is_file():
        check_weights_file(pretrained)  # a pickle is refused from its first bytes, never loaded
    kwargs: dict[str, Any] = {"force_image_size": cfg.image_size} if cfg.image_size else {}
    text_cfg = (model_cfg or {}).get("text_cfg", {})
    if ASSET_PREFIX in str(text_cfg.get("hf_model_name", "")):
        kwargs["text_cfg"] = _resolved_text_cfg(text_cfg, asset_path(text_cfg["hf_model_name"]))
    if (pretrained or is_hub) and not _hub_reachable():
        _hub_offline()  # fail fast, but still use weights already cached
    try:
        model = _seeded_create(cfg, name, None if is_hub else pretrained, kwargs)
    except AnomedError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors for fetch failures
        if pretrained or is_hub:
            raise _fetch_error(cfg, exc) from exc
        raise
    if not pretrained and not is_hub:
        _published_preprocess(model, name)
    return model


def _seeded_create(cfg: BackboneConfig, name: str, pretrained: str | None, kwargs: dict) -> Any:
    """open_clip.create_model with a seeded random init (so a checkpoint can rebuild it) that
    leaves the caller's global RNG alone, and open_clip's log chatter silenced."""
    with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        return open_clip.create_model(name, pretrained=pretrained, **kwargs)


def _published_preprocess(model: nn.Module, name: str) -> None:
    """A random-init model normalises like its published weights would (SigLIP: 0.5/0.5)."""
    if name in TINY_PREPROCESS:
        mean, std = TINY_PREPROCESS[name]
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        tag_cfg = open_clip.get_pretrained_cfg(name, tags[0]) if tags else {}
        if "mean" not in tag_cfg:
            return
        mean, std = tag_cfg["mean"], tag_cfg["std"]
    pp = dict(open_clip.get_model_preprocess_cfg(model), mean=tuple(mean), std=tuple(std))
    open_clip.set_model_preprocess_cfg(model, pp)


def _resolved_text_cfg(text_cfg: dict, hf_folder: str) -> dict:
    """The text config with its Hugging Face model read from a local folder, never fetched
    (its weights come with the CLIP checkpoint, or it is a random init)."""
    out = copy.deepcopy(text_cfg)
    out["hf_model_name"] = hf_folder
    out["hf_model_pretrained"] = False
    return out


def _create_local(cfg: BackboneConfig, folder: Path) -> nn.Module:
    """An open_clip hf-hub folder: config, weights, tokenizer and HF text config checked first."""
    config_path = folder / "open_clip_config.json"
    if not folder.is_dir():
        raise AnomedError(f"{folder}: no such folder. Fix: check the path after 'local-dir:'.")
    if not config_path.is_file():
        raise AnomedError(
            f"{config_path}: missing. Fix: a local-dir folder holds an open_clip hf-hub download "
            "(open_clip_config.json, open_clip_model.safetensors, tokenizer files)."
        )
    try:
        model_cfg = json.loads(config_path.read_text(encoding="utf-8"))["model_cfg"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AnomedError(
            f"{config_path}: not an open_clip config ({type(exc).__name__}: {exc}). Fix: use the "
            "file as downloaded (a JSON object with 'model_cfg' and 'preprocess_cfg')."
        ) from exc
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        raise AnomedError(
            f"{folder}: no weights file ({WEIGHT_FILES[0]} or {', '.join(WEIGHT_FILES[1:])}). "
            "Fix: copy the checkpoint from the downloaded repository into the folder."
        )
    weights = next(folder / f for f in WEIGHT_FILES if (folder / f).is_file())
    check_weights_file(weights)  # a pickled .bin/.pth is refused unread, with the conversion
    text_cfg = model_cfg.get("text_cfg", {})
    if text_cfg.get("hf_tokenizer_name") and not any(
        (folder / f).is_file() for f in TOKENIZER_FILES
    ):
        raise AnomedError(
            f"{folder}: no tokenizer file ({' / '.join(TOKENIZER_FILES)}, with "
            "tokenizer_config.json). Fix: copy the tokenizer files of the downloaded repository "
            "into the folder."
        )
    kwargs: dict[str, Any] = {"force_image_size": cfg.image_size} if cfg.image_size else {}
    if text_cfg.get("hf_model_name"):
        kwargs["text_cfg"] = _resolved_text_cfg(text_cfg, _hf_text_folder(folder, text_cfg))
    try:  # every path is local now: nothing is fetched
        return _seeded_create(cfg, f"local-dir:{folder}", None, kwargs)
    except (RuntimeError, OSError, ValueError, KeyError) as exc:
        raise AnomedError(
            f"{folder}: the weights do not fit open_clip_config.json ({type(exc).__name__}: "
            f"{str(exc)[:300]}). Fix: keep the config and checkpoint of one download together."
        ) from exc


def _hf_text_folder(folder: Path, text_cfg: dict) -> str:
    """Where the HF text model's config.json is: the named path, the folder itself, a `text/`
    subfolder or one named like the model (e.g. BiomedBERT's), or the package's tiny ones."""
    name = str(text_cfg["hf_model_name"])
    if name.startswith(ASSET_PREFIX):
        return asset_path(name)
    candidates = [Path(name).expanduser(), folder, folder / "text", folder / Path(name).name]
    for cand in candidates:
        if (cand / "config.json").is_file():
            return str(cand)
    raise AnomedError(
        f"{folder}: open_clip_config.json names the Hugging Face text model {name!r}, but no "
        f"config.json for it is here. Fix: put that model's config.json (from its Hugging Face "
        f"page) into {folder} or {folder / 'text'}."
    )


def _create_timm(cfg: BackboneConfig, name: str) -> nn.Module:
    """A bare timm ViT as an image-only tower (DINOv2 for the memory bank); weights from the
    `--pretrained` file (safetensors), never fetched."""
    import timm

    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=4, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise AnomedError(f"unknown timm model {name!r}.{hint} Fix: pick a timm.list_models().")
    kwargs: dict[str, Any] = {"img_size": cfg.image_size} if cfg.image_size else {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    if cfg.pretrained:
        _load_timm_weights(model, Path(cfg.pretrained))
    model.preprocess_cfg = {
        "mean": tuple(model.pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(model.pretrained_cfg.get("std", (0.229, 0.224, 0.225))),
    }
    return model


def _load_timm_weights(model: nn.Module, path: Path) -> None:
    if path.suffix != ".safetensors" or not path.is_file():
        raise AnomedError(
            f"{path}: no such safetensors file. Fix: pass the timm model's model.safetensors."
        )
    from safetensors.torch import load_file

    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AnomedError(
            f"{path}: does not fit this timm model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}). Fix: pass the weights of the model named after 'timm:'."
        )


def make_tokenizer(cfg: BackboneConfig, model_cfg: dict | None) -> Any:
    """The model's tokenizer from local files. A random-init model whose tokenizer is not on this
    machine (a hub name, offline) gets the package's tiny one: its weights mean nothing anyway."""
    text_cfg = (model_cfg or {}).get("text_cfg", {})
    hf_name = str(text_cfg.get("hf_tokenizer_name", ""))
    context = int(text_cfg.get("context_length", 77))
    if hf_name.startswith(ASSET_PREFIX):
        return _hf_tokenizer(asset_path(hf_name), context, text_cfg)
    if hf_name and not cfg.model.startswith("local-dir:") and not _hub_reachable():
        _hub_offline()  # fail fast, but still use a cached tokenizer
    try:
        with _quiet_open_clip():
            return open_clip.get_tokenizer(cfg.model)
    except Exception:  # an HF/sentencepiece tokenizer that is neither cached nor reachable
        if cfg.pretrained or cfg.model.startswith(("local-dir:", "hf-hub:")):
            raise
        return _hf_tokenizer(asset_path("anomed:tiny-bert"), context, text_cfg)


def _hf_tokenizer(folder: str, context: int, text_cfg: dict) -> Any:
    from open_clip.tokenizer import HFTokenizer

    return HFTokenizer(folder, context_length=context, **text_cfg.get("tokenizer_kwargs", {}))


def model_config(cfg: BackboneConfig) -> dict | None:
    """The open_clip config dict of `cfg.model` (None for `timm:` towers)."""
    if cfg.model.startswith("timm:"):
        return None
    if cfg.model.startswith("local-dir:"):
        path = Path(cfg.model[len("local-dir:") :]).expanduser() / "open_clip_config.json"
        return json.loads(path.read_text(encoding="utf-8"))["model_cfg"]
    return open_clip.get_model_config(cfg.model)


class _quiet_open_clip:
    """Silence open_clip's and the hub's log lines (random-init notices, retry chatter).

    Failures still surface as exceptions, which `create_clip` turns into one clear message.
    """

    def __enter__(self) -> None:
        logging.disable(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.disable(logging.NOTSET)


def _hub_offline() -> None:
    """Switch huggingface_hub to offline mode (it reads the variable once, at import)."""
    import huggingface_hub.constants as hub_constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True


def _hub_reachable(host: str = "huggingface.co") -> bool:
    """Whether the hub's name resolves; if not, fetching can only use the local cache."""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True
