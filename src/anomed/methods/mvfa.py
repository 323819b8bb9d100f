"""MVFA (CVPR 2024): multi-level residual adapters inside a frozen CLIP, a fixed prompt ensemble,
and a memory bank of adapted normal tokens for few-shot inference.

Composition: residual adapters after blocks 6/12/18/24 (scaled to depth) -> per layer, softmax of
100 * cos(token, class text) -> detection (mean abnormal probability, BCE) and segmentation
(upsampled, focal + dice) -> at inference, the text map fused 0.5/0.5 with the memory-bank map.

Departures from the reference code, on purpose: BCE is applied to probabilities (the reference
feeds probabilities to BCE-with-logits); training is batched (the reference uses batch 1); maps
and scores are normalised with statistics of training/validation data only. `normalization:
paper` reproduces the reference's min-max over the whole test set, which makes a single image's
score depend on the other test images, so a checkpoint's threshold means nothing under it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from anomed.adapters.residual import ResidualAdapters
from anomed.data.augment import mvfa_views
from anomed.data.datasets import collate
from anomed.losses import binary_cross_entropy, dice_loss, focal_loss
from anomed.memory_bank import MemoryBank, banks_state, split_banks_state
from anomed.methods.base import METHODS, AnomalyOutput, LabelledShotsMethod, MethodConfig
from anomed.prompts import encode_fixed_prompts, organ_word
from anomed.prompts.ensemble import ensemble_texts
from anomed.scoring import layer_maps, patch_text_probs, tokens_to_grid, upsample

# Rows of the `stats` buffer: (low, high) of each score, fixed on validation data.
TEXT_MAP, BANK_MAP, TEXT_DET, BANK_DET = range(4)


@dataclass
class MVFAConfig(MethodConfig):
    epochs: int = 50
    batch_size: int = 16
    lr: float = 1e-3  # few-shot; the zero-shot protocol uses 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    layers: tuple[int, ...] = (6, 12, 18, 24)  # of a 24-block ViT, scaled to depth
    gamma: float = 0.8  # residual stream: x <- gamma x + alpha cls + beta seg
    alpha: float = 0.1
    beta: float = 0.1
    logit_scale: float = 100.0
    fusion: float = 0.5  # weight of the text map; the memory-bank map gets 1 - fusion
    memory_bank: bool = True  # few-shot inference with adapted normal tokens
    coreset: float | None = None  # keep this fraction of the bank (PatchCore coreset)
    normalization: str = "val"  # "val" (validation statistics) or "paper" (test min-max)
    organ: str = ""  # prompt organ word; "" = from the dataset's class name


@METHODS.register("mvfa")
class MVFA(LabelledShotsMethod):
    """MVFA: residual multi-level adapters + prompt ensemble + memory bank (labelled shots)."""

    name = "mvfa"
    config_class = MVFAConfig

    def __init__(self, backbone, cfg: MVFAConfig) -> None:
        super().__init__(backbone, cfg)
        self.layer_ids = backbone.layers(cfg.layers)
        self.adapters = ResidualAdapters(
            self.layer_ids,
            backbone.vision_width,
            backbone.embed_dim,
            cfg.gamma,
            cfg.alpha,
            cfg.beta,
        )
        self.register_buffer("stats", torch.tensor([[0.0, 1.0]] * 4))
        self.bank_seg: MemoryBank | None = None
        self.bank_det: MemoryBank | None = None

    def views(self, image: np.ndarray, mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return mvfa_views(image, mask)

    # ---- text -----------------------------------------------------------------------------
    def class_text(self, class_name: str) -> Tensor:
        """Normal/abnormal features (2, D) for a dataset class name (cached: prompts are fixed)."""
        organ = self.cfg.organ or organ_word(class_name)
        return self.text_cache.fixed(
            organ,
            self.stats.device,
            lambda: encode_fixed_prompts(self.backbone, list(ensemble_texts(organ))),
        )

    # ---- features -------------------------------------------------------------------------
    def adapted_tokens(self, images: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Joint-space patch tokens of the detection and segmentation branches, per layer."""
        self.adapters.reset()
        self.backbone.encode_image(images, self.layer_ids, block_hook=self.adapters.hook)
        det = [t[:, 1:] for t in self.adapters.cls_tokens]  # (B, N, D)
        seg = [t[:, 1:] for t in self.adapters.seg_tokens]
        self.adapters.reset()
        return det, seg

    def _probs(self, tokens: Tensor, text: Tensor) -> Tensor:
        return patch_text_probs(tokens, text, 1.0 / self.cfg.logit_scale)  # (B, N, 2)

    # ---- training -------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        images, mask = batch["image"], batch["mask"]
        det, seg = self.adapted_tokens(images)
        text = self.batch_text(batch.get("dataset"), images.shape[0])
        target = batch["label"].float()
        cls_loss = sum(
            binary_cross_entropy(self._probs(t, text)[..., 1].mean(1), target) for t in det
        )
        seg_on = batch["has_mask"].bool()
        seg_loss = images.new_zeros(())
        if bool(seg_on.any()):
            maps = layer_maps(
                [self._probs(t[seg_on], text[seg_on]) for t in seg],
                self.backbone.grid_size,
                images.shape[-2:],
            )  # (L, B', 2, H, W)
            for probs in maps:
                seg_loss = seg_loss + self.seg_loss(probs, mask[seg_on])
        return {"loss": cls_loss + seg_loss, "cls": cls_loss.detach(), "seg": seg_loss.detach()}

    def seg_loss(self, probs: Tensor, mask: Tensor) -> Tensor:
        """probs (B, 2, H, W), mask (B, H, W): focal + dice on the abnormal channel."""
        return focal_loss(probs, mask.long()) + dice_loss(probs[:, 1], mask)

    # ---- memory bank and statistics --------------------------------------------------------
    @torch.no_grad()
    def prepare(self) -> None:
        """Rebuild the memory bank from the adapted tokens of the augmented normal shots, then
        fix each score's range on the validation images (never on test data)."""
        if self.support is not None and self.cfg.memory_bank and self.support.normals:
            views = [
                v
                for im in self.support.normals
                for v, _ in self.views(im, np.zeros(im.shape[:2], bool))
            ]
            det_tokens, seg_tokens = self._collect(views)
            self.bank_seg = MemoryBank.build(seg_tokens, coreset=self.cfg.coreset)
            self.bank_det = MemoryBank.build(det_tokens, coreset=self.cfg.coreset)
        if self.validation:
            images = collate(self.validation)["image"].to(self.stats.device)
            self.fit_ranges(self.raw_scores(images))

    def _collect(self, images: list[np.ndarray], batch: int = 16) -> tuple[list, list]:
        device = self.stats.device
        det_all, seg_all = [], []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack(images[i : i + batch]).transpose(0, 3, 1, 2)).to(device)
            det, seg = self.adapted_tokens(x.float())
            det_all.append([t.reshape(-1, t.shape[-1]) for t in det])
            seg_all.append([t.reshape(-1, t.shape[-1]) for t in seg])
        merge = lambda parts: [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]  # noqa: E731
        return merge(det_all), merge(seg_all)

    # ---- inference ------------------------------------------------------------------------
    def raw_scores(self, images: Tensor) -> dict[int, Tensor]:
        """Unnormalised maps (B, H, W) and image scores (B,), keyed by the `stats` rows."""
        det, seg = self.adapted_tokens(images)
        text = self.class_text(self.class_name)
        size, grid = images.shape[-2:], self.backbone.grid_size
        out = {
            TEXT_MAP: layer_maps([self._probs(t, text) for t in seg], grid, size)[:, :, 1].sum(0),
            TEXT_DET: torch.stack([self._probs(t, text)[..., 1].mean(1) for t in det]).sum(0),
        }
        if self.bank_seg is not None and self.bank_det is not None:
            dists = self.bank_seg.score(seg)  # per layer (B, N)
            maps = [upsample(tokens_to_grid(d.unsqueeze(-1), grid), size)[:, 0] for d in dists]
            out[BANK_MAP] = torch.stack(maps).sum(0)
            out[BANK_DET] = torch.stack([d.mean(1) for d in self.bank_det.score(det)]).sum(0)
        return out

    def _norm(self, values: Tensor, row: int) -> Tensor:
        if self.cfg.normalization == "paper":
            return values  # min-max over the test set happens in `finalize_test`
        return self.normalized(values, row)

    def forward(self, images: Tensor) -> AnomalyOutput:
        raw = self.raw_scores(images)
        w = self.cfg.fusion if BANK_MAP in raw else 1.0
        amap = w * self._norm(raw[TEXT_MAP], TEXT_MAP)
        det = w * self._norm(raw[TEXT_DET], TEXT_DET)
        if BANK_MAP in raw:
            amap = amap + (1 - w) * self._norm(raw[BANK_MAP], BANK_MAP)
            det = det + (1 - w) * self._norm(raw[BANK_DET], BANK_DET)
        score = amap.flatten(1).amax(1) if bool(self.seg_task) else det
        return AnomalyOutput(amap, score)

    def finalize_test(
        self, maps: np.ndarray, scores: np.ndarray, parts: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """`normalization: paper`: min-max of the maps and of the scores over the whole set."""
        if self.cfg.normalization != "paper":
            return maps, scores
        return _minmax(maps), _minmax(scores)

    # ---- checkpoints ----------------------------------------------------------------------
    def trainable_state_dict(self) -> dict[str, Tensor]:
        banks = {"bank_seg": self.bank_seg, "bank_det": self.bank_det}
        return {**super().trainable_state_dict(), **banks_state(banks)}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        banks, rest = split_banks_state(state, ["bank_seg", "bank_det"])
        self.bank_seg, self.bank_det = banks["bank_seg"], banks["bank_det"]
        super().load_trainable_state_dict(rest)


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return (x - x.min()) / max(float(x.max() - x.min()), 1e-12)
