"""MediCLIP (MICCAI 2024): learnable class prompts + side linear adapters, trained on normal
shots with synthesized anomalies.

Composition: frozen CLIP taps (12/18/24 of ViT-L-14, scaled to depth) -> a linear adapter per
layer -> 2-way softmax of cos(patch, class text) / tau -> upsampled, averaged over layers ->
focal + dice against the synthetic mask. Image score = max of the abnormal map.

The paper divides cosines by tau = 0.07; the reference code drops tau, leaving probabilities near
0.5. We follow the paper (`temperature`); set it to 1.0 to reproduce the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from anomed.adapters import LinearAdapters
from anomed.losses import dice_loss, focal_loss
from anomed.methods.base import METHODS, AnomalyOutput, MethodConfig, SynthesisMethod
from anomed.prompts import MEDICLIP_ABNORMAL, MEDICLIP_NORMAL, PromptLearner, PromptSet
from anomed.scoring import gaussian_smooth, layer_maps, patch_text_probs
from anomed.synthesis import AnomalySynthesizer


@dataclass
class MediCLIPConfig(MethodConfig):
    epochs: int = 200  # paper: 200 passes over the k shots
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    layers: tuple[int, ...] = (12, 18, 24)  # block indices of a 24-block ViT, scaled to depth
    n_ctx: int = 8
    temperature: float = 0.07
    normal_words: tuple[str, ...] = MEDICLIP_NORMAL
    abnormal_words: tuple[str, ...] = MEDICLIP_ABNORMAL
    tasks: tuple[str, ...] = ("cutpaste", "gauss_intensity", "source")
    identity_prob: float = 0.0  # share of training items left normal
    repeats: int = 1  # items per shot per epoch
    score_smoothing: float = 0.0  # Gaussian sigma (pixels) before the image max; 0 = paper


@METHODS.register("mediclip")
class MediCLIP(SynthesisMethod):
    name = "mediclip"
    config_class = MediCLIPConfig
    normal_only = True
    cacheable = True
    probability_scores = True  # max of a softmax map

    def __init__(self, backbone, cfg: MediCLIPConfig) -> None:
        super().__init__(backbone, cfg)
        self.layer_ids = backbone.layers(cfg.layers)
        words = (tuple(cfg.normal_words), tuple(cfg.abnormal_words))
        self.prompts = PromptLearner(backbone, PromptSet(words, n_ctx=cfg.n_ctx))
        self.adapters = LinearAdapters(
            len(self.layer_ids), backbone.vision_width, backbone.embed_dim
        )
        self.synthesizer = AnomalySynthesizer(
            tasks=tuple(cfg.tasks), identity_prob=cfg.identity_prob
        )

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.trainable_parameters(), lr=self.cfg.lr, betas=self.cfg.betas)

    def frozen_features(self, images: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():  # side adapters: nothing flows back into the frozen tower
            tapped = self.backbone.encode_image(images, self.layer_ids).tapped
        return {"patches": torch.stack([t[:, 1:] for t in tapped], dim=1)}  # (B, L, N, C)

    def class_text(self) -> Tensor:
        """(2, D) learnt normal/abnormal features (memoised at inference)."""
        return self.text_cache.learnt(
            "class", self.prompts.parameters(), lambda: self.prompts(self.backbone)
        )

    def probability_maps(self, patches: Tensor, size: tuple[int, int]) -> Tensor:
        """patches (B, L, N, C) -> per-layer class probabilities (L, B, 2, H, W)."""
        text = self.class_text()  # (2, D)
        adapted = self.adapters(list(patches.unbind(1)))
        probs = [patch_text_probs(f, text, self.cfg.temperature) for f in adapted]
        return layer_maps(probs, self.backbone.grid_size, size)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["mask"]
        patches = self.batch_features(batch)["patches"]
        probs = self.probability_maps(patches, mask.shape[-2:]).mean(dim=0)  # (B, 2, H, W)
        focal = focal_loss(probs, mask.long())
        dice = dice_loss(probs[:, 1], mask)
        return {"loss": focal + dice, "focal": focal.detach(), "dice": dice.detach()}

    def forward_features(self, features: dict[str, Tensor], size: tuple[int, int]) -> AnomalyOutput:
        amap = self.probability_maps(features["patches"], size).mean(dim=0)[:, 1]  # (B, H, W)
        score = gaussian_smooth(amap, self.cfg.score_smoothing).flatten(1).amax(dim=1)
        return AnomalyOutput(amap, score)

    def forward(self, images: Tensor) -> AnomalyOutput:
        return self.forward_features(self.frozen_features(images), images.shape[-2:])
