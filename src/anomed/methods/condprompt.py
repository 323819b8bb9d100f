"""CondPrompt: conditional prompt learning for anomaly detection in medical image slices.

Composition: a meta-net (Linear -> ReLU -> Linear) turns the final-layer image embedding into a
prompt bias; each class prompt is `[class words][N image-independent vectors][N image-dependent
vectors + bias]` (N = 32), encoded per image. Per tapped layer, M_l = cos(F_l, P_A) - cos(F_l, P_N)
on the projected patch tokens; layer weights w = softmax over layers of the spatial mean of M_l;
M = sum_l w_l M_l, upsampled. The backbone is never fine-tuned; trained on normal slices with the
synthesis tasks (or on labelled slices when given).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomed.config import Bounds
from anomed.losses import dice_loss, focal_loss
from anomed.methods.base import METHODS, AnomalyOutput, MethodConfig, SynthesisMethod
from anomed.prompts import PromptLearner, PromptSet
from anomed.scoring import tokens_to_grid, upsample
from anomed.synthesis import AnomalySynthesizer


def weighted_layer_map(maps: Tensor) -> tuple[Tensor, Tensor]:
    """maps (L, B, N) -> (sum_l w_l M_l (B, N), w (L, B)); w = softmax over layers of mean M_l."""
    weights = maps.mean(dim=2).softmax(dim=0)  # (L, B)
    return (weights.unsqueeze(-1) * maps).sum(dim=0), weights


@dataclass
class CondPromptConfig(MethodConfig):
    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-3
    layers: tuple[int, ...] = (6, 12, 18, 24)
    n_ctx: int = 32  # N: image-independent and image-dependent vectors each
    normal_words: tuple[str, ...] = ("normal", "healthy")  # P_class of the normal prompt
    abnormal_words: tuple[str, ...] = ("abnormal", "lesion")
    meta_hidden: int = 0  # 0: text width // 16 (CoCoOp's choice)
    temperature: float = 0.07  # p = sigmoid(M / temperature) for the training losses
    score: Literal["max", "topk"] = "max"  # image score from the map
    topk: Annotated[float, Bounds(0.0, 1.0, open_lo=True)] = 0.01  # pixels averaged by "topk"
    tasks: tuple[str, ...] = ("cutpaste", "gauss_intensity", "source")


@METHODS.register("condprompt")
class CondPrompt(SynthesisMethod):
    """CondPrompt: image-conditioned prompts (meta-net bias) and softmax-weighted layer maps."""

    name = "condprompt"
    config_class = CondPromptConfig
    normal_only = True
    cacheable = True
    probability_scores = True  # (M + 2) / 4 in [0, 1]

    def __init__(self, backbone, cfg: CondPromptConfig) -> None:
        super().__init__(backbone, cfg)
        self.layer_ids = backbone.layers(cfg.layers)
        words = (tuple(cfg.normal_words), tuple(cfg.abnormal_words))
        prompts = PromptSet(words, n_ctx=2 * cfg.n_ctx, placement="front")
        self.prompts = PromptLearner(backbone, prompts, biased=cfg.n_ctx)
        width = backbone.text_width
        hidden = cfg.meta_hidden or max(8, width // 16)
        self.meta_net = nn.Sequential(
            nn.Linear(backbone.embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, width)
        )
        self.synthesizer = AnomalySynthesizer(tasks=tuple(cfg.tasks))

    def frozen_features(self, images: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            out = self.backbone.encode_image(images, self.layer_ids)
            feats = [self.backbone.project_tokens(t[:, 1:]) for t in out.tapped]  # (B, N, D)
        return {"patches": torch.stack(feats, dim=1), "embedding": out.image_embedding}

    def difference_maps(self, features: dict[str, Tensor]) -> Tensor:
        """M_l = cos(F_l, P_A) - cos(F_l, P_N) per tapped layer: (L, B, N).

        features: "patches" (B, L, N, D) projected tokens, "embedding" (B, D)."""
        bias = self.meta_net(features["embedding"].float())  # (B, W)
        text = self.prompts(self.backbone, ctx_bias=bias)  # (B, 2, D)
        text = F.normalize(text, dim=-1)
        patches = F.normalize(features["patches"], dim=-1)
        maps = torch.einsum("blnd,bcd->lbnc", patches, text)  # (L, B, N, 2)
        return maps[..., 1] - maps[..., 0]

    def anomaly_map(self, features: dict[str, Tensor], size: tuple[int, int]) -> Tensor:
        """(B, H, W) layer-weighted difference map at `size`, in [-2, 2]."""
        fused, _ = weighted_layer_map(self.difference_maps(features))
        return upsample(tokens_to_grid(fused.unsqueeze(-1), self.backbone.grid_size), size)[:, 0]

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["mask"]
        amap = self.anomaly_map(self.batch_features(batch), mask.shape[-2:])
        prob = torch.sigmoid(amap / self.cfg.temperature)
        focal = focal_loss(torch.stack([1 - prob, prob], dim=1), mask.long())
        dice = dice_loss(prob, mask)
        return {"loss": focal + dice, "focal": focal.detach(), "dice": dice.detach()}

    def forward(self, images: Tensor) -> AnomalyOutput:
        return self.forward_features(self.frozen_features(images), images.shape[-2:])

    def forward_features(self, features: dict[str, Tensor], size: tuple[int, int]) -> AnomalyOutput:
        amap = (self.anomaly_map(features, size) + 2.0) / 4.0  # [-2, 2] -> [0, 1], no statistics
        flat = amap.flatten(1)
        if self.cfg.score == "topk":
            k = max(1, int(self.cfg.topk * flat.shape[1]))
            score = flat.topk(k, dim=1).values.mean(1)
        else:
            score = flat.amax(1)
        return AnomalyOutput(amap, score)
