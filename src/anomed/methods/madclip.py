"""MadCLIP (MICCAI 2025): dual-branch side adapters, dual contrast and a sigmoid image-text loss.

Composition: frozen CLIP taps (6/12/18/24, scaled) -> per layer a normal and an abnormal adapter
(detection + segmentation heads) -> dual contrast S_n = f_n.t_n - f_n.t_a, S_a = f_a.t_a - f_a.t_n
-> segmentation: softmax([S_n, S_a]) maps, dice + focal; image-text: SigLIP-style sigmoid loss.
Prompts `[V1..V8][state][organ]` at the end, front and middle, averaged. Every ablation of the
paper is a config switch (see MadCLIPConfig).

Where anomed, the paper and the reference code (mahshid1998/MadCLIP) differ, `MadCLIPConfig` has
a switch and `MadCLIP.presets` the values (FIDELITY.md lists them): the prompts' wording (the
reference puts the organ inside the state phrase: "flawless brain", "brain without flaw", the
bare "brain"), one context per prompt and placement (42 sets; the paper: one per class), the
text pass without causal mask, the raw class mean, Softmax(Interpolate(S)) with
align_corners=True, the image loss (the reference: per-patch log-sigmoid, mean over patches,
summed over the two channels; the paper: SigLip on c = Mean(SoftMax(S))), the random
brightness/contrast view, the 5 % shift, [0, 1] pixels and the min-max over the test set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomed.adapters import DualBranchAdapters
from anomed.config import Bounds
from anomed.data.augment import MADCLIP_BRIGHTNESS, MADCLIP_CONTRAST, madclip_views
from anomed.data.datasets import SupportSet, collate
from anomed.losses import (
    FocalFloor,
    dice_loss,
    focal_loss,
    sigmoid_image_text_loss,
    sigmoid_patch_loss,
)
from anomed.methods.base import METHODS, AnomalyOutput, LabelledShotsMethod, MethodConfig
from anomed.prompts import PromptLearner, PromptSet, encode_fixed_prompts, organ_word
from anomed.prompts.ensemble import NORMAL_STATES
from anomed.prompts.learnable import ContextMode, PromptMean, TextAttention, context_shape
from anomed.scoring import MapOrder, class_maps, set_minmax

NORMAL_WORDS = (
    "flawless",
    "perfect",
    "unblemished",
    "without flaw",
    "without defect",
    "without damage",
    "plain",
)
ABNORMAL_WORDS = (
    "damaged",
    "broken",
    "with flaw",
    "with defect",
    "with damage",
    "disease",
    "abnormal",
)
# The reference's states: "{}" is where the organ goes (inside the placed phrase)
REFERENCE_NORMAL_STATES = NORMAL_STATES  # the same seven states as MVFA's ensemble
REFERENCE_ABNORMAL_STATES = (
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
    "disease {}",
    "abnormal {}",
)
MAP, DET = 0, 1  # rows of the `stats` buffer


@dataclass
class MadCLIPConfig(MethodConfig):
    epochs: int = 60
    batch_size: int = 16
    lr: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    layers: tuple[int, ...] = (6, 12, 18, 24)
    n_ctx: int = 8
    # words ("{}" marks where the organ goes; without it the organ follows the whole prompt)
    normal_words: tuple[str, ...] = REFERENCE_NORMAL_STATES
    abnormal_words: tuple[str, ...] = REFERENCE_ABNORMAL_STATES
    placements: tuple[str, ...] = ("end", "front", "middle")
    context: ContextMode = "per_prompt"  # "per_prompt": one set per word and placement
    text_attention: TextAttention = "bidirectional"
    prompt_mean: PromptMean = "raw"
    # softmax on the patches, then upsampled: kept on evidence (the reference's order scored a
    # lower pixel AUROC on phantoms, see FIDELITY.md)
    map_order: MapOrder = "softmax_upsample"
    align_corners: bool = False
    # the sigmoid image loss: on the patch-mean logit ("mean_logit"), per patch and then pooled
    # ("per_patch", the reference), or on the mean softmax probability ("mean_prob", the paper)
    image_loss_input: Literal["mean_logit", "per_patch", "mean_prob"] = "per_patch"
    image_loss_channels: Literal["mean", "sum"] = "sum"  # over the normal/abnormal channels
    jitter: Literal["fixed", "random"] = "random"  # the photometric view's factors
    view_shift: float = 0.05
    focal_floor: FocalFloor = "smooth"
    normalization: Literal["val", "test"] = "val"  # min-max ranges: validation, or the test set
    # ablation switches (paper defaults first)
    learnable_prompts: bool = True  # False: the same prompts without context vectors
    objective: str = "organ"  # "organ": the dataset's organ word; else that text literally
    dual_adapters: bool = True  # False: one adapter serves both branches
    subtraction: bool = True  # False: S_n = f_n.t_n, S_a = f_a.t_a
    image_loss: Literal["sigmoid", "softmax"] = "sigmoid"  # SigLIP-style, or cross-entropy
    separate_heads: bool = True  # False: one head for detection and segmentation
    image_logit: Literal["mean", "max", "mix"] = "mean"  # patches -> image logit
    mix: Annotated[float, Bounds(0.0, 1.0)] = 0.5  # weight of the mean in "mix"
    learn_temperature: bool = False  # learnable temperature and bias of the sigmoid loss


MADCLIP_REFERENCE = {
    "normal_words": REFERENCE_NORMAL_STATES,
    "abnormal_words": REFERENCE_ABNORMAL_STATES,
    "context": "per_prompt",
    "text_attention": "bidirectional",
    "prompt_mean": "raw",
    "map_order": "upsample_softmax",
    "align_corners": True,
    "image_loss_input": "per_patch",
    "image_loss_channels": "sum",
    "jitter": "random",
    "view_shift": 0.05,
    "focal_floor": "smooth",
    "normalization": "test",
    "backbone.preprocess": "paper",
}


@METHODS.register("madclip")
class MadCLIP(LabelledShotsMethod):
    """MadCLIP: dual normal/abnormal side adapters, dual contrast, sigmoid loss (labelled shots)."""

    name = "madclip"
    config_class = MadCLIPConfig
    cacheable = True
    presets = {
        "anomed": {"backbone.preprocess": "paper"},  # the reference's [0, 1] (no evidence)
        "reference": MADCLIP_REFERENCE,
        # the paper: one context set per class (V, W) and SigLip on c = Mean(SoftMax(S))
        "paper": {**MADCLIP_REFERENCE, "context": "per_class", "image_loss_input": "mean_prob"},
    }

    def __init__(self, backbone, cfg: MadCLIPConfig) -> None:
        super().__init__(backbone, cfg)
        self.layer_ids = backbone.layers(cfg.layers)
        self.adapters = DualBranchAdapters(
            len(self.layer_ids),
            backbone.vision_width,
            backbone.embed_dim,
            cfg.dual_adapters,
            cfg.separate_heads,
        )
        self.learners = nn.ModuleDict()  # per organ word; buffers only (the context is ctx)
        shape = context_shape(self._prompt_set(""), cfg.context, backbone.text_width)
        self.ctx = nn.Parameter(torch.randn(shape) * 0.02, requires_grad=cfg.learnable_prompts)
        self.temperature = nn.Parameter(torch.ones(()), requires_grad=cfg.learn_temperature)
        self.bias = nn.Parameter(torch.zeros(()), requires_grad=cfg.learn_temperature)
        self.register_buffer("stats", torch.tensor([[0.0, 1.0]] * 2))
        self._validation_features: tuple[list, torch.device, dict[str, Tensor]] | None = None
        self.jitter_factors = (MADCLIP_BRIGHTNESS, MADCLIP_CONTRAST)

    def setup(
        self,
        supports: list[SupportSet],
        class_name: str,
        validation: SupportSet | None = None,
        target: SupportSet | None = None,
        seed: int = 0,
    ) -> None:
        """Also draws the photometric view's factors once per run (`jitter: random`, as the
        reference: brightness and contrast uniform in [0.8, 1.2], shared by every shot)."""
        super().setup(supports, class_name, validation, target, seed)
        if self.cfg.jitter == "random":
            b, c = np.random.default_rng([seed, 16]).uniform(0.8, 1.2, size=2)
            self.jitter_factors = (float(b), float(c))

    def views(self, image: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        kind = "reference" if self.cfg.jitter == "random" else "fixed"
        return madclip_views(image, mask, self.cfg.view_shift, *self.jitter_factors, kind)

    # ---- text -----------------------------------------------------------------------------
    def _prompt_set(self, class_name: str) -> PromptSet:
        objective = organ_word(class_name) if self.cfg.objective == "organ" else self.cfg.objective
        words = (tuple(self.cfg.normal_words), tuple(self.cfg.abnormal_words))
        n_ctx = self.cfg.n_ctx if self.cfg.learnable_prompts else 0
        return PromptSet(words, n_ctx=n_ctx, placement=tuple(self.cfg.placements), suffix=objective)

    def _learner(self, class_name: str) -> PromptLearner:
        """The prompt learner of an organ word (built once; it holds frozen word embeddings)."""
        key = class_name or "-"
        if key not in self.learners:
            learner = PromptLearner(
                self.backbone,
                self._prompt_set(class_name),
                self.cfg.context,
                own_context=False,
                prompt_mean=self.cfg.prompt_mean,
                attention=self.cfg.text_attention,
            )
            self.learners[key] = learner.to(self.stats.device)
        return self.learners[key]

    def class_text(self, class_name: str) -> Tensor:
        """(2, D) normal/abnormal features; learnable prompts share one context per class."""
        if not self.cfg.learnable_prompts:
            ps = self._prompt_set(class_name)
            texts = [[t for w in words for t in ps.render_all(w)] for words in ps.class_words]
            return self.text_cache.fixed(
                class_name,
                self.stats.device,
                lambda: encode_fixed_prompts(self.backbone, texts, self.cfg.prompt_mean),
            )
        learner = self._learner(class_name)
        return self.text_cache.learnt(
            class_name, [self.ctx], lambda: learner(self.backbone, ctx=self.ctx)
        )

    # ---- scores ---------------------------------------------------------------------------
    def dual_contrast(self, f_n: Tensor, f_a: Tensor, text: Tensor) -> Tensor:
        """f_n, f_a: (B, N, D); text: (B, 2, D) -> logits (B, N, 2) = [S_n, S_a]."""
        f_n, f_a, text = (
            F.normalize(f_n, dim=-1),
            F.normalize(f_a, dim=-1),
            F.normalize(text, dim=-1),
        )
        sim_n = torch.einsum("bnd,bcd->bnc", f_n, text)  # f_n.t_n, f_n.t_a
        sim_a = torch.einsum("bnd,bcd->bnc", f_a, text)
        s_n, s_a = sim_n[..., 0], sim_a[..., 1]
        if self.cfg.subtraction:
            s_n, s_a = s_n - sim_n[..., 1], s_a - sim_a[..., 0]
        return torch.stack([s_n, s_a], dim=-1)

    def frozen_features(self, images: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():  # side branch: no activations kept in the frozen tower
            tapped = self.backbone.encode_image(images, self.layer_ids).tapped
        return {"patches": torch.stack([t[:, 1:] for t in tapped], dim=1)}  # (B, L, N, C)

    def layer_logits(self, patches: Tensor, text: Tensor) -> list[dict[str, Tensor]]:
        """patches (B, L, N, C), text (B, 2, D) -> per layer {"det", "seg"}: logits (B, N, 2)."""
        feats = self.adapters(list(patches.unbind(1)))
        return [
            {
                head: self.dual_contrast(f[f"{head}_n"], f[f"{head}_a"], text)
                for head in ("det", "seg")
            }
            for f in feats
        ]

    def pool(self, values: Tensor) -> Tensor:
        """Per-patch values (B, N, C) -> per image (B, C) by `image_logit`: mean, max or mix."""
        mean, peak = values.mean(dim=1), values.amax(dim=1)
        if self.cfg.image_logit == "mean":
            return mean
        if self.cfg.image_logit == "max":
            return peak
        return self.cfg.mix * mean + (1 - self.cfg.mix) * peak

    def image_logits(self, det: Tensor) -> Tensor:
        """det logits (B, N, 2) -> image-level (B, 2) by mean, max or a mix."""
        return self.pool(det)

    def seg_maps(self, logits: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Per-layer segmentation logits [(B, N, 2)] -> class probability maps (L, B, 2, H, W)."""
        order, corners = self.cfg.map_order, self.cfg.align_corners
        return class_maps(logits, self.backbone.grid_size, size, order, corners)

    # ---- training -------------------------------------------------------------------------
    def image_loss(self, det: Tensor, label: Tensor) -> Tensor:
        """det: per-patch logits (B, N, 2) = [normal, abnormal], or already pooled (B, 2);
        labels [-y, +y] with y = +1 for an abnormal image."""
        if det.dim() == 2:
            det = det.unsqueeze(1)  # one "patch": the pooled logits
        if self.cfg.image_loss == "softmax":
            return F.cross_entropy(self.pool(det), label.long())
        targets = torch.stack([1 - label, label], dim=-1).float()  # (B, 2) in {0, 1}
        t, b = self.temperature, self.bias
        if self.cfg.image_loss_input == "per_patch":
            channels = self.cfg.image_loss_channels
            return sigmoid_patch_loss(det, targets, self.pool, channels, t, b)
        pooled = self.pool(det.softmax(-1) if self.cfg.image_loss_input == "mean_prob" else det)
        if self.cfg.image_loss_channels == "sum":
            return sigmoid_image_text_loss(pooled, targets, t, b) * pooled.shape[-1]
        return sigmoid_image_text_loss(pooled, targets, t, b)

    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        mask, label = batch["mask"], batch["label"]
        patches = self.batch_features(batch)["patches"]
        text = self.batch_text(batch.get("dataset"), patches.shape[0])
        seg_on = batch["has_mask"].bool()
        img_loss = seg_loss = patches.new_zeros((), dtype=torch.float32)
        for layer in self.layer_logits(patches, text):
            img_loss = img_loss + self.image_loss(layer["det"], label)
            if bool(seg_on.any()):
                probs = self.seg_maps([layer["seg"][seg_on]], mask.shape[-2:])[0]  # (B', 2, H, W)
                m = mask[seg_on]
                focal = focal_loss(probs, m.long(), floor=self.cfg.focal_floor)
                seg_loss = seg_loss + focal + dice_loss(probs[:, 1], m)
        return {"loss": img_loss + seg_loss, "image": img_loss.detach(), "seg": seg_loss.detach()}

    # ---- inference ------------------------------------------------------------------------
    def raw_scores(
        self, features: dict[str, Tensor], size: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Unnormalised (map (B, H, W), detection score (B,)): sums over layers."""
        patches = features["patches"]
        text = self.class_text(self.class_name).expand(patches.shape[0], -1, -1)
        layers = self.layer_logits(patches, text)
        amap = self.seg_maps([layer["seg"] for layer in layers], size)[:, :, 1].sum(0)
        det = torch.stack([self.pool(layer["det"].softmax(-1))[:, 1] for layer in layers]).sum(0)
        return amap, det

    @torch.no_grad()
    def prepare(self) -> None:
        """Fix the map and score ranges on the validation images (never on test data)."""
        if not self.validation:
            return
        memo = self._validation_features  # frozen features: the same every pass
        # the list itself, not its id(): a new list after a second setup() may reuse the id
        if memo is None or memo[0] is not self.validation or memo[1] != self.stats.device:
            images = collate(self.validation)["image"].to(self.stats.device)
            features = self.frozen_features(images)
            memo = self._validation_features = (self.validation, self.stats.device, features)
        amap, det = self.raw_scores(memo[2], self.validation[0]["image"].shape[-2:])
        self.fit_ranges({MAP: amap, DET: det})

    def forward_features(self, features: dict[str, Tensor], size: tuple[int, int]) -> AnomalyOutput:
        raw_map, raw_det = self.raw_scores(features, size)
        amap, det = self.normalized(raw_map, MAP), self.normalized(raw_det, DET)
        score = amap.flatten(1).amax(1) if bool(self.seg_task) else det
        parts = {"map": raw_map, "det": raw_det} if self.cfg.normalization == "test" else None
        return AnomalyOutput(amap, score, parts)

    def finalize_test(
        self, maps: np.ndarray, scores: np.ndarray, parts: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`normalization: test`: (x - min) / (1e-4 + max - min) over the evaluated set, as the
        reference does for its map and its detection score."""
        if self.cfg.normalization != "test" or not parts:
            return maps, scores
        amap = set_minmax(parts["map"], 1e-4)
        score = amap.reshape(len(amap), -1).max(1) if bool(self.seg_task) else None
        return amap, score if score is not None else set_minmax(parts["det"], 1e-4)

    def forward(self, images: Tensor) -> AnomalyOutput:
        return self.forward_features(self.frozen_features(images), images.shape[-2:])
