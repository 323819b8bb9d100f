"""Learnable prompts (CoOp): context vectors spliced between frozen word embeddings.

A prompt is a template such as "X X X X X X X X lesion." whose "X" placeholders are replaced by
learnable vectors. Which context set a prompt uses is its *group*: one group per class gives
MediCLIP's class-specific contexts; one shared group gives PPAD's; a per-image bias added to the
contexts gives conditional prompts (CondPrompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from anomed.backbone import FrozenCLIP

PLACEHOLDER = "X"


@dataclass(frozen=True)
class PromptSet:
    """The prompts of each class: words put into a template around the context placeholders."""

    class_words: tuple[tuple[str, ...], ...]  # per class, its words (averaged)
    n_ctx: int = 8
    placement: str | tuple[str, ...] = "end"  # word vs context: end, front, middle (or several)
    prefix: str = ""  # frozen words before everything (e.g. a position phrase)
    suffix: str = ""  # frozen words after the word (e.g. an organ word)

    def render(self, word: str, placement: str | None = None) -> str:
        placement = placement or self.placements[0]
        ctx = [PLACEHOLDER] * self.n_ctx
        if placement == "end":
            parts = [*ctx, word]
        elif placement == "front":
            parts = [word, *ctx]
        elif placement == "middle":
            half = self.n_ctx // 2
            parts = [*ctx[:half], word, *ctx[half:]]
        else:
            raise ValueError(f"unknown placement {placement!r}")
        text = " ".join(p for p in (self.prefix, *parts, self.suffix) if p)
        return text + "."

    @property
    def placements(self) -> tuple[str, ...]:
        return (self.placement,) if isinstance(self.placement, str) else tuple(self.placement)

    def render_all(self, word: str) -> list[str]:
        """The word in every placement (their features are averaged with the class's others)."""
        return [self.render(word, p) for p in self.placements]


_optimizer_steps = 0  # part of the inference memo's key: fused optimizers leave _version alone


def prompts_stepped() -> None:
    """Tell every PromptLearner that parameters may have changed (the training loop calls it
    after each optimizer step), so no memoised class feature outlives an update."""
    global _optimizer_steps
    _optimizer_steps += 1


class PromptLearner(nn.Module):
    """Class text features (C, D) from learnable context vectors and frozen words.

    Only `ctx` is trainable; the frozen word embeddings are buffers, so the optimiser and the
    checkpoint see nothing of the backbone.
    """

    def __init__(
        self,
        backbone: FrozenCLIP,
        prompts: PromptSet,
        class_specific: bool = True,
        init_std: float = 0.02,
        ctx: nn.Parameter | None = None,
        biased: int | None = None,
    ) -> None:
        """`ctx` shares another learner's context vectors (e.g. the same prompts with another
        organ word); by default fresh vectors are drawn from N(0, init_std^2). `biased` limits a
        per-image context bias to the last that many context vectors (CondPrompt's
        image-dependent half); None biases all of them."""
        super().__init__()
        texts, classes = [], []
        for c, words in enumerate(prompts.class_words):
            for word in words:
                rendered = prompts.render_all(word)
                texts += rendered
                classes += [c] * len(rendered)
        n_groups = len(prompts.class_words) if class_specific else 1
        token_ids = backbone.tokenize(texts)  # (P, L)
        placeholder_id = int(backbone.tokenize([PLACEHOLDER])[0, 1])
        is_ctx = token_ids == placeholder_id
        if not bool((is_ctx.sum(dim=1) == prompts.n_ctx).all()):
            raise ValueError("a class word tokenizes into the context placeholder; rename it")
        ctx_index = torch.where(
            is_ctx, is_ctx.long().cumsum(dim=1) - 1, torch.zeros_like(token_ids)
        )
        with torch.no_grad():
            frozen = backbone.token_embeddings(token_ids).detach().cpu()  # (P, L, W)
        self.backbone_ref = [backbone]  # a list keeps the frozen backbone out of state_dict
        self.n_classes = len(prompts.class_words)
        shape = (n_groups, prompts.n_ctx, backbone.text_width)
        if ctx is not None and tuple(ctx.shape) != shape:
            raise ValueError(f"shared context has shape {tuple(ctx.shape)}, expected {shape}")
        self.ctx = ctx if ctx is not None else nn.Parameter(torch.randn(shape) * init_std)
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.text_length = int(token_ids.argmax(dim=-1).max()) + 1  # up to the last end-of-text
        self.register_buffer("frozen", frozen, persistent=False)
        self.register_buffer("is_ctx", is_ctx, persistent=False)
        self.register_buffer("ctx_index", ctx_index, persistent=False)
        group = (
            torch.tensor(classes) if class_specific else torch.zeros(len(classes), dtype=torch.long)
        )
        self.register_buffer("group", group, persistent=False)
        self.register_buffer("prompt_class", torch.tensor(classes), persistent=False)
        bias_mask = torch.ones(prompts.n_ctx)
        if biased is not None:
            bias_mask[: prompts.n_ctx - biased] = 0.0
        self.register_buffer("bias_mask", bias_mask, persistent=False)  # (n_ctx,)
        self._memo: tuple[tuple, Tensor] | None = None  # inference-time class features

    @property
    def backbone(self) -> FrozenCLIP:
        return self.backbone_ref[0]

    def prompt_embeddings(self, ctx_bias: Tensor | None = None) -> Tensor:
        """(P, L, W), or (B, P, L, W) with a per-image context bias (B, W)."""
        ctx = self.ctx[self.group]  # (P, n_ctx, W)
        if ctx_bias is not None:
            bias = ctx_bias[:, None, None, :] * self.bias_mask[:, None]  # (B, 1, n_ctx, W)
            ctx = ctx.unsqueeze(0) + bias  # (B, P, n_ctx, W)
        index = self.ctx_index.unsqueeze(-1).expand(*self.ctx_index.shape, ctx.shape[-1])
        if ctx_bias is not None:
            index = index.unsqueeze(0).expand(ctx.shape[0], *index.shape)
        spliced = torch.gather(ctx, -2, index)  # (..., P, L, W)
        return torch.where(self.is_ctx.unsqueeze(-1), spliced, self.frozen.to(ctx.dtype))

    def forward(self, ctx_bias: Tensor | None = None) -> Tensor:
        """L2-normalised class features (C, D); (B, C, D) when a context bias (B, W) is given.

        Without gradients and bias the features depend only on the context vectors, so
        inference reuses them until the contexts change (optimizer step, load, device move)."""
        if ctx_bias is not None or torch.is_grad_enabled():
            return self._encode(ctx_bias)
        device_type = self.ctx.device.type
        key = (
            _optimizer_steps,
            self.ctx._version,
            self.ctx.data_ptr(),
            self.ctx.device,
            torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type),
        )
        if self._memo is None or self._memo[0] != key:
            self._memo = (key, self._encode(None))
        return self._memo[1]

    def _encode(self, ctx_bias: Tensor | None) -> Tensor:
        emb = self.prompt_embeddings(ctx_bias)
        batch_shape = emb.shape[:-3]
        ids = self.token_ids.expand(*batch_shape, *self.token_ids.shape).reshape(-1, emb.shape[-2])
        feats = self.backbone.encode_text_embeddings(
            emb.reshape(-1, *emb.shape[-2:]), ids, self.text_length
        )
        feats = feats.reshape(*batch_shape, -1, feats.shape[-1])  # (..., P, D)
        return class_means(feats, self.prompt_class, self.n_classes)


def class_means(features: Tensor, prompt_class: Tensor, n_classes: int) -> Tensor:
    """Mean of L2-normalised prompt features per class, renormalised: (..., P, D) -> (..., C, D)."""
    features = nn.functional.normalize(features, dim=-1)
    onehot = nn.functional.one_hot(prompt_class, n_classes).to(features.dtype)  # (P, C)
    means = torch.einsum("...pd,pc->...cd", features, onehot / onehot.sum(0))
    return nn.functional.normalize(means, dim=-1)


def encode_fixed_prompts(backbone: FrozenCLIP, class_texts: Sequence[Sequence[str]]) -> Tensor:
    """Hand-crafted prompt ensembles -> class features (C, D) (mean of normalised, renormalised)."""
    texts = [t for texts in class_texts for t in texts]
    classes = torch.tensor([c for c, texts in enumerate(class_texts) for _ in texts])
    feats = backbone.encode_text(texts)
    return class_means(feats, classes.to(feats.device), len(class_texts))
