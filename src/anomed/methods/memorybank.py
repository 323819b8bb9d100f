"""A memory-bank baseline (PatchCore-style) on frozen CLIP patch tokens: no training at all.

Normal shots' tokens of several layers form the bank (optionally a greedy coreset); a test patch
scores its distance to the nearest normal patch; maps are averaged over layers and smoothed;
image score = max. The honest floor every adapted method should beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from torch import Tensor

from anomed.config import Bounds
from anomed.data.datasets import ItemsDataset, SupportSet, plain_items
from anomed.memory_bank import MemoryBank, banks_state, split_banks_state
from anomed.methods.base import METHODS, AnomalyMethod, AnomalyOutput, MethodConfig
from anomed.scoring import gaussian_smooth, tokens_to_grid, upsample


@dataclass
class MemoryBankConfig(MethodConfig):
    epochs: int = 0  # nothing is trained
    batch_size: int = 16
    layers: tuple[int, ...] = (6, 12, 18)  # of a 24-block ViT, scaled to depth
    # fraction of the bank kept; None keeps all
    coreset: Annotated[float | None, Bounds(0.0, 1.0, open_lo=True)] = 0.25
    distance: Literal["euclidean", "cosine"] = "euclidean"  # PatchCore; "cosine" as MVFA's bank
    smoothing: float = 4.0  # Gaussian sigma (pixels) of the map


@METHODS.register("memorybank")
class MemoryBankMethod(AnomalyMethod):
    """Memory bank of frozen CLIP patch tokens (PatchCore-style), normal shots only."""

    name = "memorybank"
    config_class = MemoryBankConfig
    normal_only = True
    needs_text = False  # patch tokens only: runs on image-only towers (a bare timm ViT, DINOv2)

    def __init__(self, backbone, cfg: MemoryBankConfig) -> None:
        super().__init__(backbone, cfg)
        self.layer_ids = backbone.layers(cfg.layers)
        self.bank: MemoryBank | None = None
        self.register_buffer("anchor", torch.zeros(()))  # tracks the device

    def train_dataset(self, supports: Sequence[SupportSet], seed: int) -> ItemsDataset:
        return ItemsDataset([])

    def validation_items(self, support: SupportSet, seed: int) -> list[dict]:
        return plain_items(support)

    @torch.no_grad()
    def patch_tokens(self, images: Tensor) -> list[Tensor]:
        return [t[:, 1:] for t in self.backbone.encode_image(images, self.layer_ids).tapped]

    @torch.no_grad()
    def prepare(self) -> None:
        if self.support is None or not self.support.normals:
            return
        images = torch.from_numpy(np.stack(self.support.normals).transpose(0, 3, 1, 2))
        feats = [[] for _ in self.layer_ids]
        for chunk in images.split(self.cfg.batch_size):
            for i, t in enumerate(self.patch_tokens(chunk.to(self.anchor.device).float())):
                feats[i].append(t.reshape(-1, t.shape[-1]))
        self.bank = MemoryBank.build(
            [torch.cat(f) for f in feats], coreset=self.cfg.coreset, distance=self.cfg.distance
        )

    def forward(self, images: Tensor) -> AnomalyOutput:
        if self.bank is None:
            raise RuntimeError("the memory bank is empty: call prepare() with normal shots first")
        dists = self.bank.score(self.patch_tokens(images))  # per layer (B, N)
        grid, size = self.backbone.grid_size, images.shape[-2:]
        maps = [upsample(tokens_to_grid(d.unsqueeze(-1), grid), size)[:, 0] for d in dists]
        amap = gaussian_smooth(torch.stack(maps).mean(0), self.cfg.smoothing)
        return AnomalyOutput(amap, amap.flatten(1).amax(1))

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {**super().trainable_state_dict(), **banks_state({"bank": self.bank})}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        banks, rest = split_banks_state(state, ["bank"])
        self.bank = banks["bank"]
        super().load_trainable_state_dict(rest)
