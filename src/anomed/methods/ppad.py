"""PPAD (MICCAI 2024): position-guided text and image prompts for chest X-rays, trained on normal
films with structure-preserving anomaly synthesis (SAS).

Five fixed regions of the input, each with a phrase: "left lung" (image columns 0-111 of 224),
"right lung" (112-223), "upper lung" (rows 0-119), "lower lung" (rows 120-223) and the whole
image (no phrase). The names are *image sides*, not the patient's anatomy (on a PA film the
patient's right lung is on the image's left); anomed keeps the paper's behaviour and says so.

Text: "{position} [V1..V16] {class}." with 16 context vectors shared by every class and position.
Image: a learnable prompt token per patch location replaces the patch tokens outside the region
(tokens * m + prompt * (1 - m)) before CLS, positional embeddings and the pre-norm.
Score per position: softmax over classes of logit_scale * cos(image, text); an image's score is
max_k p_k if that exceeds 0.8, else mean_k p_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from anomed.config import Bounds
from anomed.data.datasets import SupportSet, plain_items, to_item
from anomed.methods.base import METHODS, AnomalyMethod, AnomalyOutput, MethodConfig
from anomed.prompts import PromptLearner, PromptSet
from anomed.synthesis.sas import SAS

POSITIONS = ("left lung", "right lung", "upper lung", "lower lung", "")
REFERENCE_SIZE = 224  # the paper's region boundaries are given on a 224 x 224 input


def region_boxes(size: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of the five regions on a size x size input, end exclusive."""
    half, upper = round(112 * size / REFERENCE_SIZE), round(120 * size / REFERENCE_SIZE)
    return [
        (0, size, 0, half),
        (0, size, half, size),
        (0, upper, 0, size),
        (upper, size, 0, size),
        (0, size, 0, size),
    ]


def region_pixel_masks(size: int) -> Tensor:
    """(5, size, size) float masks of the regions."""
    masks = torch.zeros(len(POSITIONS), size, size)
    for i, (y0, y1, x0, x1) in enumerate(region_boxes(size)):
        masks[i, y0:y1, x0:x1] = 1.0
    return masks


def region_patch_masks(size: int, patch: int) -> Tensor:
    """(5, N) patch masks: average-pooled at the patch size and rounded up (a partly covered
    patch counts as inside)."""
    pooled = F.avg_pool2d(region_pixel_masks(size)[:, None], patch, patch)  # (5, 1, h, w)
    return torch.ceil(pooled - 1e-6).clamp(0, 1).flatten(1)


def combine_positions(probs: Tensor, threshold: float = 0.8) -> Tensor:
    """probs (B, K) abnormal probability per position -> (B,): max if it exceeds `threshold`,
    else the mean."""
    peak = probs.amax(dim=1)
    return torch.where(peak > threshold, peak, probs.mean(dim=1))


@dataclass
class PPADConfig(MethodConfig):
    epochs: int = 100
    batch_size: int = 0  # 0: all shots in one batch (the paper)
    lr: float = 1e-3
    momentum: float = 0.9
    n_ctx: int = 16
    class_words: tuple[str, str] = ("normal", "pneumonia")
    prompt_init_std: float = 0.02
    prompt_init_scale: float = 10.0
    # share of training items with a SAS anomaly in their region
    synth_prob: Annotated[float, Bounds(0.0, 1.0)] = 0.5
    loss: Literal["ce", "bce"] = "bce"  # the reference's per-logit BCE, or softmax cross-entropy
    max_threshold: float = 0.8
    # SAS: the blob centred on its drawn centre, or the reference's canvas (offset up/left);
    # the gamma map's edges (see anomed.synthesis.sas.gamma_map)
    sas_placement: Literal["centred", "canvas"] = "canvas"
    sas_edges: Literal["anomed", "reference"] = "reference"
    # position probabilities: softmax over normal/abnormal of scale * cos (CLIP's), or SigLIP's
    # sigmoid(scale * cos + bias) of the abnormal text; "auto": as the backbone was trained
    text_scoring: Literal["auto", "softmax", "sigmoid"] = "auto"


PPAD_REFERENCE = {
    "loss": "bce",
    "sas_placement": "canvas",
    "sas_edges": "reference",
    "train.select": "last",  # the reference saves the last epoch
    "backbone.preprocess": "cxr",  # its single chest X-ray mean/std
}


class RegionSynthesisDataset(Dataset):
    """Per item and epoch: a random region; with probability p a SAS anomaly inside it."""

    def __init__(
        self, images: Sequence[np.ndarray], size: int, p: float, seed: int, sas: SAS | None = None
    ) -> None:
        self.images, self.boxes, self.p, self.seed = list(images), region_boxes(size), p, seed
        self.epoch, self.sas = 0, sas or SAS()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        region = int(rng.integers(len(self.boxes)))
        image = self.images[index]
        mask = np.zeros(image.shape[:2], bool)
        if rng.random() < self.p:
            image, mask = self.sas(image, rng, region=self.boxes[region])
        item = to_item(image.astype(np.float32), mask, int(mask.any()), index)
        return {**item, "region": region}


@METHODS.register("ppad")
class PPAD(AnomalyMethod):
    """PPAD: position-guided text and image prompts for chest X-rays (normal shots + SAS)."""

    name = "ppad"
    config_class = PPADConfig
    normal_only = True
    probability_scores = True  # softmax probability of the abnormal class
    # no PPAD paper text beyond the abstract among the sources: "paper" follows the reference
    presets = {
        "anomed": {"backbone.preprocess": "cxr"},  # the reference's mean/std (no evidence)
        "reference": PPAD_REFERENCE,
        "paper": PPAD_REFERENCE,
    }

    def __init__(self, backbone, cfg: PPADConfig) -> None:
        super().__init__(backbone, cfg)
        n = backbone.grid_size[0] * backbone.grid_size[1]
        init = torch.randn(n, backbone.vision_width) * cfg.prompt_init_std * cfg.prompt_init_scale
        self.image_prompt = nn.Parameter(init)  # (N, C)
        self.ctx = nn.Parameter(torch.randn(1, cfg.n_ctx, backbone.text_width) * 0.02)
        words = tuple((w,) for w in cfg.class_words)
        self.learners = nn.ModuleList(  # buffers only: they read the shared context `ctx`
            PromptLearner(
                backbone, PromptSet(words, cfg.n_ctx, prefix=p), "shared", own_context=False
            )
            for p in POSITIONS
        )
        self.register_buffer(
            "patch_masks", region_patch_masks(backbone.image_size, backbone.patch_size)
        )
        self.scoring = self.text_scoring(cfg.text_scoring)

    def train_dataset(self, supports: Sequence[SupportSet], seed: int) -> RegionSynthesisDataset:
        normals = [im for s in supports for im in s.normals]
        size, p = self.backbone.image_size, self.cfg.synth_prob
        return RegionSynthesisDataset(normals, size, p, seed, self.sas())

    def sas(self) -> SAS:
        return SAS(placement=self.cfg.sas_placement, edges=self.cfg.sas_edges)

    def validation_items(self, support: SupportSet, seed: int) -> list[dict]:
        """Each validation normal as it is and with a SAS anomaly in a random region."""
        size = self.backbone.image_size
        ds = RegionSynthesisDataset(support.normals, size, 1.0, seed + 10_000, self.sas())
        synthetic = [{k: v for k, v in ds[i].items() if k != "region"} for i in range(len(ds))]
        return plain_items(support) + synthetic

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            self.trainable_parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum
        )

    def configure_scheduler(self, optimizer, total_steps: int):
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))

    def text_features(self) -> Tensor:
        """(5 positions, 2 classes, D): depends only on the context vectors, so once per step."""
        return self.text_cache.learnt(
            "positions",
            [self.ctx],
            lambda: torch.stack([lrn(self.backbone, ctx=self.ctx) for lrn in self.learners]),
        )

    def position_logits(self, images: Tensor, regions: Tensor, text: Tensor) -> Tensor:
        """Logits (B, 2) of each image under its own region's image and text prompts."""
        keep = self.patch_masks[regions].unsqueeze(-1)  # (B, N, 1)

        def hook(tokens: Tensor) -> Tensor:  # tokens (B, N, C)
            return tokens * keep + self.image_prompt.to(tokens.dtype) * (1 - keep)

        feats = self.backbone.encode_image(images, [self.backbone.depth], patch_hook=hook)
        image = F.normalize(feats.image_embedding, dim=-1)  # (B, D)
        cls_text = F.normalize(text[regions], dim=-1)  # (B, 2, D)
        logits = self.backbone.logit_scale * torch.einsum("bd,bcd->bc", image, cls_text)
        return logits + self.backbone.logit_bias if self.scoring == "sigmoid" else logits

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        logits = self.position_logits(batch["image"], batch["region"], self.text_features())
        label = batch["label"].long()
        if self.cfg.loss == "bce":  # the reference: per-logit BCE while scoring with softmax
            loss = F.binary_cross_entropy_with_logits(logits, F.one_hot(label, 2).float())
        else:
            loss = F.cross_entropy(logits, label)
        return {"loss": loss}

    def position_probs(self, images: Tensor) -> Tensor:
        """Abnormal probability of each image under each position: (B, 5)."""
        text = self.text_features()
        probs = []
        for k in range(len(POSITIONS)):
            regions = torch.full((images.shape[0],), k, device=images.device, dtype=torch.long)
            logits = self.position_logits(images, regions, text)
            sig = self.scoring == "sigmoid"
            probs.append(logits[:, 1].sigmoid() if sig else logits.softmax(-1)[:, 1])
        return torch.stack(probs, dim=1)

    def forward(self, images: Tensor) -> AnomalyOutput:
        probs = self.position_probs(images)  # (B, 5)
        masks = region_pixel_masks(int(images.shape[-1])).to(images.device)  # (5, H, W)
        coverage = masks.sum(0).clamp_min(1.0)
        amap = torch.einsum("bk,khw->bhw", probs, masks) / coverage  # coarse localisation
        return AnomalyOutput(amap, combine_positions(probs, self.cfg.max_threshold))
