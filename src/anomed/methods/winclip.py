"""WinCLIP (CVPR 2023) zero-shot and WinCLIP+ few-shot: the training-free CLIP baselines.

The "reference" preset follows anomalib's WinCLIP (the implementation users compare with): the
WinCLIP paper's prompt list (7 normal + 4 abnormal states x 21 templates), the raw mean of the
prompt features, and few-shot patch tokens from the last block after `ln_post`.

Zero-shot: the prompt ensemble (state words x templates, the MVFA issue's list) at temperature
0.07; window embeddings of 2x2 and 3x3 patch windows, each computed by running only that
window's tokens (and CLS) through the tower; per-window abnormal probabilities combined per patch
by harmonic aggregation; a harmonic mean across scales and the image-level score.
Few-shot (WinCLIP+): per patch and per window, the distance (1 - cos)/2 to the nearest of the k
normal references; map = (zero-shot + few-shot)/2, score = (zero-shot + max few-shot map)/2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from anomed.data.datasets import ItemsDataset, SupportSet, plain_items
from anomed.memory_bank import MemoryBank, banks_state, split_banks_state
from anomed.methods.base import METHODS, AnomalyMethod, AnomalyOutput, MethodConfig
from anomed.prompts import encode_fixed_prompts, organ_word
from anomed.prompts.ensemble import ensemble_texts
from anomed.prompts.learnable import PromptMean
from anomed.scoring import (
    harmonic_aggregate,
    harmonic_mean,
    patch_text_probs,
    sigmoid_text_probs,
    tokens_to_grid,
    upsample,
    window_subsets,
)


@dataclass
class WinCLIPConfig(MethodConfig):
    epochs: int = 0  # training-free
    batch_size: int = 8
    temperature: float = 0.07
    scales: tuple[int, ...] = (2, 3)  # window sides in patches
    few_shot: bool = False
    patch_layer: int = 18  # block (of 24, scaled) whose patch tokens the few-shot branch compares
    organ: str = ""  # "" = from the dataset's class name
    prompts: Literal["mvfa", "winclip"] = "winclip"  # the ensemble (anomed.prompts.ensemble)
    prompt_mean: PromptMean = "raw"  # "raw": mean of the unnormalised features
    # few-shot patch tokens: "block" = raw tokens after `patch_layer`; "final" = the last
    # block's tokens after ln_post (anomalib)
    few_shot_tokens: Literal["block", "final"] = "final"
    # image-text probabilities: softmax over normal/abnormal at `temperature` (CLIP's), or
    # SigLIP's sigmoid(scale * cos + bias) per class; "auto": as the backbone was trained
    text_scoring: Literal["auto", "softmax", "sigmoid"] = "auto"


WINCLIP_REFERENCE = {"prompts": "winclip", "prompt_mean": "raw", "few_shot_tokens": "final"}


@METHODS.register("winclip")
class WinCLIP(AnomalyMethod):
    """WinCLIP zero-shot: prompt ensemble + harmonic aggregation of multi-scale windows."""

    name = "winclip"
    config_class = WinCLIPConfig
    normal_only = True
    probability_scores = True  # harmonic means of class probabilities
    needs_shots = False  # zero-shot: text prompts only
    few_shot_default = False
    # no WinCLIP paper among the sources: "paper" follows the reference (anomalib)
    presets = {"reference": WINCLIP_REFERENCE, "paper": WINCLIP_REFERENCE}

    def __init__(self, backbone, cfg: WinCLIPConfig) -> None:
        super().__init__(backbone, cfg)
        self.few_shot = cfg.few_shot or self.few_shot_default
        self.patch_layer = backbone.layers([cfg.patch_layer])[0]
        self.subsets = {s: window_subsets(backbone.grid_size, s) for s in cfg.scales}
        self.banks: dict[str, MemoryBank | None] = {}
        self.register_buffer("anchor", torch.zeros(()))
        self.scoring = self.text_scoring(cfg.text_scoring)

    def abnormal_probs(self, feats: Tensor, text: Tensor) -> Tensor:
        """P(abnormal) of features (B, N, D) against the class text (2, D) -> (B, N)."""
        if self.scoring == "sigmoid":
            b = self.backbone
            return sigmoid_text_probs(feats, text, b.logit_scale, b.logit_bias)[..., 1]
        return patch_text_probs(feats, text, self.cfg.temperature)[..., 1]

    def train_dataset(self, supports: Sequence[SupportSet], seed: int) -> ItemsDataset:
        return ItemsDataset([])

    def validation_items(self, support: SupportSet, seed: int) -> list[dict]:
        return plain_items(support)

    def class_text(self) -> Tensor:
        organ = self.cfg.organ or organ_word(self.class_name)
        texts = list(ensemble_texts(organ, self.cfg.prompts))
        return self.text_cache.fixed(
            organ,
            self.anchor.device,
            lambda: encode_fixed_prompts(self.backbone, texts, self.cfg.prompt_mean),
        )

    @torch.no_grad()
    def features(self, images: Tensor) -> dict[str, Tensor]:
        """Image embedding (B, D), window embeddings per scale (B, W, D), patch tokens (B, N, C).

        The tower always runs to its last block, so the image embedding is CLIP's pooled one."""
        depth = self.backbone.depth
        out = self.backbone.encode_image(images, sorted({self.patch_layer, depth}))
        if self.cfg.few_shot_tokens == "final":
            patch = self.backbone.post_norm(out.tapped[-1][:, 1:])
        else:
            patch = out.tapped[0][:, 1:]
        feats = {"image": out.image_embedding, "patch": patch}
        for s, subsets in self.subsets.items():
            feats[f"win{s}"] = self.backbone.encode_token_subsets(images, subsets)
        return feats

    @torch.no_grad()
    def prepare(self) -> None:
        if not self.few_shot or self.support is None or not self.support.normals:
            return
        images = torch.from_numpy(np.stack(self.support.normals).transpose(0, 3, 1, 2))
        parts: dict[str, list[Tensor]] = {}
        for chunk in images.split(self.cfg.batch_size):
            for key, f in self.features(chunk.to(self.anchor.device).float()).items():
                if key != "image":
                    parts.setdefault(key, []).append(f.reshape(-1, f.shape[-1]))
        self.banks = {k: MemoryBank.build([torch.cat(v)]) for k, v in parts.items()}

    def forward(self, images: Tensor) -> AnomalyOutput:
        feats = self.features(images)
        text = self.class_text()
        n, grid, size = (
            self.backbone.grid_size[0] * self.backbone.grid_size[1],
            self.backbone.grid_size,
            images.shape[-2:],
        )
        image_score = self.abnormal_probs(feats["image"][:, None], text)[:, 0]  # (B,)
        maps = [
            harmonic_aggregate(self.abnormal_probs(feats[f"win{s}"], text), sub, n)
            for s, sub in self.subsets.items()
        ]
        zero = harmonic_mean([*maps, image_score[:, None].expand(-1, n)])  # (B, N)
        to_pixels = lambda t: upsample(tokens_to_grid(t.unsqueeze(-1), grid), size)[:, 0]  # noqa: E731
        if not (self.few_shot and self.banks):
            return AnomalyOutput(to_pixels(zero), image_score)
        few = [self.banks["patch"].score([feats["patch"]])[0] / 2]
        for s, sub in self.subsets.items():
            win = self.banks[f"win{s}"].score([feats[f"win{s}"]])[0] / 2  # (B, W)
            few.append(harmonic_aggregate(win, sub, n))
        few_map = torch.stack(few).mean(0)
        amap = to_pixels((zero + few_map) / 2)
        return AnomalyOutput(amap, (image_score + few_map.amax(1)) / 2)

    def trainable_state_dict(self) -> dict[str, Tensor]:
        return {**super().trainable_state_dict(), **banks_state(self.banks)}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        names = ["patch", *(f"win{s}" for s in self.cfg.scales)]
        banks, rest = split_banks_state(state, names)
        self.banks = {k: v for k, v in banks.items() if v is not None}
        super().load_trainable_state_dict(rest)


@METHODS.register("winclip+")
class WinCLIPPlus(WinCLIP):
    """WinCLIP+ few-shot: zero-shot WinCLIP plus nearest-normal patch and window distances."""

    name = "winclip+"
    few_shot_default = True
    needs_shots = True
