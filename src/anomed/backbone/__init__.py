"""Frozen CLIP backbones over open_clip."""

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

__all__ = [
    "PREPROCESS_PRESETS",
    "BackboneConfig",
    "FrozenCLIP",
    "VisionOutput",
    "create_clip",
    "load_backbone",
    "register_model_configs",
    "resize_maps",
    "scale_layers",
]
