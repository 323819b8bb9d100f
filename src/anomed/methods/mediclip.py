"""MediCLIP (MICCAI 2024): learnable class prompts + side linear adapters, trained on normal
shots with synthesized anomalies.

Composition: frozen CLIP taps (12/18/24 of ViT-L-14, scaled to depth) -> a linear adapter per
layer -> 2-way softmax of cos(patch, class text) / tau -> upsampled, averaged over layers ->
focal + dice against the synthetic mask. Image score = max of the abnormal map.

Where the paper, the reference code (cnulab/MediCLIP) and anomed differ, `MediCLIPConfig` has a
switch and `MediCLIP.presets` says which value each preset takes (FIDELITY.md lists them): the
text pass (the reference drops the causal mask), one context per prompt (the reference's
CSC=True: 21 sets), the class mean, tau (the paper 0.07, the code none), the map formula (the
paper: softmax -> upsample -> average; the code: average the layer logits -> upsample with
align_corners=True -> softmax), the synthesis recipe and the focal loss's floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from anomed.adapters import LinearAdapters
from anomed.errors import AnomedError
from anomed.losses import FocalFloor, dice_loss, focal_loss
from anomed.methods.base import METHODS, AnomalyOutput, MethodConfig, SynthesisMethod
from anomed.prompts import MEDICLIP_ABNORMAL, MEDICLIP_NORMAL, PromptLearner, PromptSet
from anomed.prompts.learnable import ContextMode, PromptMean, TextAttention
from anomed.scoring import class_maps, gaussian_smooth, patch_text_logits
from anomed.synthesis import SYNTHESIS, AnomalySynthesizer, CutPaste
from anomed.synthesis.medsyn import MEDSYN_TASKS, MedsynSynthesizer


@dataclass
class MediCLIPConfig(MethodConfig):
    epochs: int = 200  # paper: 200 passes over the k shots
    batch_size: int = 8
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    layers: tuple[int, ...] = (12, 18, 24)  # block indices of a 24-block ViT, scaled to depth
    n_ctx: int = 8
    temperature: float = 0.07  # the paper's; the code's 1.0 scored worse on phantoms
    normal_words: tuple[str, ...] = MEDICLIP_NORMAL
    abnormal_words: tuple[str, ...] = MEDICLIP_ABNORMAL
    # text pass of the learnable prompts; one context per class or per prompt; the class mean
    text_attention: TextAttention = "bidirectional"
    context: ContextMode = "per_prompt"
    prompt_mean: PromptMean = "raw"
    # "softmax_upsample": per layer softmax -> upsample -> mean of the layers (the paper; kept
    # with tau on evidence, see FIDELITY.md);
    # "mean_upsample_softmax": mean of the layers' logits -> upsample -> softmax (the code)
    map_order: Literal["softmax_upsample", "mean_upsample_softmax"] = "softmax_upsample"
    align_corners: bool = False  # bilinear upsampling mode (the reference: True)
    # "body": 1-2 mixed tasks, lesion-like blobs inside the body (anomed); "medsyn": the
    # reference's recipe, one task per image among `tasks` (see anomed.synthesis.medsyn)
    synthesis: Literal["body", "medsyn"] = "medsyn"
    tasks: tuple[str, ...] = ("cutpaste", "gauss_intensity", "source", "identity")
    identity_prob: float = 0.0  # "body": share left normal (0: the share of "identity" in tasks)
    cutpaste_blend: Literal["poisson", "paste"] = "paste"
    source_alpha: Literal["uniform", "log_uniform"] = "log_uniform"  # "medsyn" only
    focal_floor: FocalFloor = "smooth"
    repeats: int = 1  # items per shot per epoch
    score_smoothing: float = 0.0  # Gaussian sigma (pixels) before the image max; 0 = paper


REFERENCE = {
    "text_attention": "bidirectional",
    "context": "per_prompt",
    "prompt_mean": "raw",
    "temperature": 1.0,
    "map_order": "mean_upsample_softmax",
    "align_corners": True,
    "synthesis": "medsyn",
    "tasks": ("cutpaste", "gauss_intensity", "source", "identity"),
    "cutpaste_blend": "paste",
    "source_alpha": "log_uniform",
    "focal_floor": "smooth",
}


@METHODS.register("mediclip")
class MediCLIP(SynthesisMethod):
    """MediCLIP: learnable class prompts + linear side adapters, synthesized anomalies."""

    name = "mediclip"
    config_class = MediCLIPConfig
    normal_only = True
    cacheable = True
    probability_scores = True  # max of a softmax map
    presets = {
        "reference": REFERENCE,
        # the paper's Eq. 2 (tau = 0.07) and map (softmax -> upsample -> average), and its
        # Sec. 2.4: three tasks (no Identity), Poisson-blended CutPaste, alpha uniform
        "paper": {
            **REFERENCE,
            "temperature": 0.07,
            "map_order": "softmax_upsample",
            "tasks": ("cutpaste", "gauss_intensity", "source"),
            "cutpaste_blend": "poisson",
            "source_alpha": "uniform",
        },
    }

    def __init__(self, backbone, cfg: MediCLIPConfig) -> None:
        super().__init__(backbone, cfg)
        self.layer_ids = backbone.layers(cfg.layers)
        words = (tuple(cfg.normal_words), tuple(cfg.abnormal_words))
        self.prompts = PromptLearner(
            backbone,
            PromptSet(words, n_ctx=cfg.n_ctx),
            cfg.context,
            prompt_mean=cfg.prompt_mean,
            attention=cfg.text_attention,
        )
        self.adapters = LinearAdapters(
            len(self.layer_ids), backbone.vision_width, backbone.embed_dim
        )
        self.synthesizer = make_synthesizer(cfg)

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

    def layer_logits(self, patches: Tensor) -> list[Tensor]:
        """patches (B, L, N, C) -> per layer cos(adapted patch, class) / tau: (B, N, 2)."""
        text = self.class_text()  # (2, D)
        adapted = self.adapters(list(patches.unbind(1)))
        return [patch_text_logits(f, text, self.cfg.temperature) for f in adapted]

    def probability_map(self, patches: Tensor, size: tuple[int, int]) -> Tensor:
        """patches (B, L, N, C) -> class probabilities (B, 2, H, W), the layers combined."""
        logits, grid = self.layer_logits(patches), self.backbone.grid_size
        if self.cfg.map_order == "mean_upsample_softmax":
            mean = torch.stack(logits).mean(dim=0)
            return class_maps([mean], grid, size, "upsample_softmax", self.cfg.align_corners)[0]
        maps = class_maps(logits, grid, size, "softmax_upsample", self.cfg.align_corners)
        return maps.mean(dim=0)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask = batch["mask"]
        patches = self.batch_features(batch)["patches"]
        probs = self.probability_map(patches, mask.shape[-2:])  # (B, 2, H, W)
        focal = focal_loss(probs, mask.long(), floor=self.cfg.focal_floor)
        dice = dice_loss(probs[:, 1], mask)
        return {"loss": focal + dice, "focal": focal.detach(), "dice": dice.detach()}

    def forward_features(self, features: dict[str, Tensor], size: tuple[int, int]) -> AnomalyOutput:
        amap = self.probability_map(features["patches"], size)[:, 1]  # (B, H, W)
        score = gaussian_smooth(amap, self.cfg.score_smoothing).flatten(1).amax(dim=1)
        return AnomalyOutput(amap, score)

    def forward(self, images: Tensor) -> AnomalyOutput:
        return self.forward_features(self.frozen_features(images), images.shape[-2:])


def make_synthesizer(cfg: MediCLIPConfig):
    """The training-anomaly recipe of a MediCLIP config (see `MediCLIPConfig.synthesis`)."""
    known = MEDSYN_TASKS if cfg.synthesis == "medsyn" else (*SYNTHESIS.names(), "identity")
    unknown = [t for t in cfg.tasks if t not in known]
    if unknown or not cfg.tasks:
        raise AnomedError(
            f"method_args.tasks: {unknown[0] if unknown else 'none'!r} is not a {cfg.synthesis} "
            f"task. Fix: choose from {', '.join(known)}."
        )
    if cfg.synthesis == "medsyn":
        return MedsynSynthesizer(tuple(cfg.tasks), cfg.cutpaste_blend, cfg.source_alpha)
    # "body": "identity" in `tasks` keeps its equal share of unchanged items, as in "medsyn"
    drawn = [t for t in cfg.tasks if t != "identity"]
    identity = cfg.identity_prob or (cfg.tasks.count("identity") / len(cfg.tasks))
    if not drawn:
        raise AnomedError("method_args.tasks: only 'identity'. Fix: add an anomaly task.")
    tasks = tuple(
        CutPaste(blend=cfg.cutpaste_blend) if t == "cutpaste" else SYNTHESIS.get(t)() for t in drawn
    )
    return AnomalySynthesizer(tasks=tasks, identity_prob=identity)
