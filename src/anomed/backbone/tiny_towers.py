"""Tiny random-init timm ViTs for the architecture-faithful test backbones (timm's own `test_vit`
habit): BiomedCLIP's tower shape (class token, token pooling) and SigLIP's (no class token,
attention-pool head), small enough for tests on two CPU cores."""

from __future__ import annotations

from typing import Any

import timm
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer, _create_vision_transformer

_TOWERS: dict[str, dict[str, Any]] = {
    # BiomedCLIP: vit_base_patch16_224 (class token, token pooling), here 96 wide and 6 deep
    "anomed_tiny_vit_b16": dict(patch_size=16, embed_dim=96, depth=6, num_heads=3),
    # SigLIP / SigLIP2: vit_base_patch16_siglip_224 (no class token, "map" attention pool)
    "anomed_tiny_vit_siglip": dict(
        patch_size=16, embed_dim=96, depth=6, num_heads=3, class_token=False, global_pool="map"
    ),
}
_CFG = {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3, "num_classes": 0}


def _builder(name: str, args: dict[str, Any]):
    def build(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
        kwargs.setdefault("pretrained_cfg", dict(_CFG, architecture=name))
        return _create_vision_transformer(name, pretrained=False, **dict(args, **kwargs))

    build.__name__ = name
    return build


def register() -> None:
    """Register the tiny towers with timm (idempotent)."""
    known = set(timm.list_models("anomed_*"))
    for name, args in _TOWERS.items():
        if name not in known:
            register_model(_builder(name, args))
