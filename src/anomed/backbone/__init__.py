"""Frozen vision-language backbones over open_clip and timm: load, tap blocks, encode text."""

from anomed.backbone.clip import (
    PREPROCESS_PRESETS,
    BackboneConfig,
    FrozenCLIP,
    VisionOutput,
    create_clip,
    load_backbone,
    register_model_configs,
    resize_maps,
    scale_layers,
)
from anomed.backbone.text import TextTower
from anomed.backbone.vision import VisionTower

__all__ = [
    "PREPROCESS_PRESETS",
    "BackboneConfig",
    "FrozenCLIP",
    "TextTower",
    "VisionOutput",
    "VisionTower",
    "create_clip",
    "load_backbone",
    "register_model_configs",
    "resize_maps",
    "scale_layers",
]
