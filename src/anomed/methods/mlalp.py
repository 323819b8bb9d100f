"""MLA-LP: MVFA's multi-level residual adapters with learnable prompts instead of the ensemble.

Prompts `[V1]...[VM][CLS]` with medical class words, averaged per class; prompts learn at 1e-3 and
adapters at 1e-4 (in the zero-shot protocol too, as the paper states); the segmentation loss adds
dice(normal channel, 1 - mask) (Eq. 11). There is no MLA-LP code: its "reference" preset is
MVFA's reference code with the paper's prompts and learning rates. The paper describes no memory
bank; anomed and the reference preset keep MVFA's (fused 0.5/0.5), the "paper" preset drops it
and follows Eq. 9-10 (softmax on the patches, then bilinear upsampling).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from anomed.losses import dice_loss
from anomed.methods.base import METHODS
from anomed.methods.mvfa import MVFA, MVFA_REFERENCE, MVFAConfig
from anomed.prompts import PromptLearner, PromptSet

MLALP_NORMAL = ("healthy", "normal", "asymptomatic", "unremarkable", "no findings")
MLALP_ABNORMAL = ("disease", "pathological", "abnormal", "lesion", "symptomatic")


@dataclass
class MLALPConfig(MVFAConfig):
    lr: float = 1e-3  # prompts
    adapter_lr: float = 1e-4
    n_ctx: int = 8
    normal_words: tuple[str, ...] = MLALP_NORMAL
    abnormal_words: tuple[str, ...] = MLALP_ABNORMAL


# MVFA's code, but the paper's batch 16 (the paper gives it; MVFA's batch 1 is MVFA's choice)
MLALP_REFERENCE = {**MVFA_REFERENCE, "batch_size": 16}


@METHODS.register("mlalp")
class MLALP(MVFA):
    """MLA-LP: MVFA's residual adapters + learnable class prompts (labelled shots)."""

    name = "mlalp"
    config_class = MLALPConfig
    presets = {
        "anomed": {"backbone.preprocess": "paper"},  # as MVFA's
        "reference": MLALP_REFERENCE,
        "paper": {**MLALP_REFERENCE, "memory_bank": False, "map_order": "softmax_upsample"},
    }
    zero_shot_args = {}  # the paper's learning rates (prompts 1e-3, adapters 1e-4) as they are

    def __init__(self, backbone, cfg: MLALPConfig) -> None:
        super().__init__(backbone, cfg)
        words = (tuple(cfg.normal_words), tuple(cfg.abnormal_words))
        self.prompts = PromptLearner(backbone, PromptSet(words, n_ctx=cfg.n_ctx))

    def class_text(self, class_name: str) -> Tensor:
        """(2, D) learnt class features (no organ word: one set for every dataset)."""
        return self.text_cache.learnt(
            "class", self.prompts.parameters(), lambda: self.prompts(self.backbone)
        )

    def batch_text(self, dataset_ids: Tensor | None, batch: int) -> Tensor:
        return self.class_text(self.class_name).expand(batch, -1, -1)

    def configure_optimizer(self) -> torch.optim.Optimizer:
        groups = [
            {"params": list(self.prompts.parameters()), "lr": self.cfg.lr},
            {"params": self.adapter_parameters(), "lr": self.cfg.adapter_lr},
        ]
        return torch.optim.Adam(groups, betas=self.cfg.betas)

    def seg_loss(self, probs: Tensor, mask: Tensor) -> Tensor:
        return super().seg_loss(probs, mask) + dice_loss(probs[:, 0], 1 - mask)
