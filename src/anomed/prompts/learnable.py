"""Learnable prompts (CoOp): context vectors spliced between frozen word embeddings.

A prompt is a template such as "X X X X X X X X lesion." whose "X" placeholders are replaced by
learnable vectors. Which context set a prompt uses is its *group*: one group per class gives
CoOp's class-specific contexts; one per prompt the MediCLIP and MadCLIP references'; one shared
group PPAD's; a per-image bias added to the contexts gives conditional prompts (CondPrompt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from anomed.backbone import FrozenCLIP
from anomed.errors import AnomedError

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
        """The prompt text of `word`. A word holding "{}" takes the suffix there, inside the
        phrase that is placed ("flawless {}" -> "flawless brain X X X X."); other words are
        followed by the suffix after everything ("flawless X X X X brain.")."""
        placement = placement or self.placements[0]
        suffix = self.suffix
        if "{}" in word:
            word, suffix = word.replace("{}", self.suffix).strip(), ""
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
        text = " ".join(p for p in (self.prefix, *parts, suffix) if p)
        return text + "."

    @property
    def placements(self) -> tuple[str, ...]:
        return (self.placement,) if isinstance(self.placement, str) else tuple(self.placement)

    def render_all(self, word: str) -> list[str]:
        """The word in every placement (their features are averaged with the class's others)."""
        return [self.render(word, p) for p in self.placements]


ContextMode = Literal["per_class", "per_prompt", "shared"]
PromptMean = Literal["normalized", "raw"]
TextAttention = Literal["causal", "bidirectional"]


def prompt_groups(prompts: PromptSet, context: ContextMode) -> list[int]:
    """Per rendered prompt (class-major, word-major, then placement) its context set."""
    classes = [
        c for c, words in enumerate(prompts.class_words) for w in words for _ in prompts.placements
    ]
    if context == "per_class":
        return classes
    if context == "per_prompt":
        return list(range(len(classes)))
    return [0] * len(classes)


def context_shape(prompts: PromptSet, context: ContextMode, width: int) -> tuple[int, int, int]:
    """(sets, n_ctx, width) of the context vectors a learner of `prompts` reads."""
    return (max(prompt_groups(prompts, context), default=0) + 1, prompts.n_ctx, width)


class PromptLearner(nn.Module):
    """Class text features (C, D) from learnable context vectors and frozen words.

    Which context set a prompt uses (`context`): one per class (CoOp's class-specific context),
    one per rendered prompt (the MediCLIP and MadCLIP references' `CSC=True`: every word, and
    every placement of it, its own vectors) or one shared set. Only the context vectors train;
    the frozen word embeddings are buffers. The frozen backbone is not kept: callers pass it to
    `forward`, so it never enters this module's state. With `own_context=False` the vectors
    belong to the caller (e.g. shared by the learners of several organ words) and are passed to
    `forward` too; `context_shape` says what they must look like.

    `prompt_mean`: a class feature is the mean of its prompts' features, each L2-normalised
    first ("normalized", CLIP's zero-shot ensembling) or as encoded ("raw", the references' and
    MediCLIP's Eq.: mean of F(p)); then normalised. `attention`: the text tower's causal mask, or
    none ("bidirectional", as the MediCLIP and MadCLIP references encode learnable prompts).
    """

    def __init__(
        self,
        backbone: FrozenCLIP,
        prompts: PromptSet,
        context: ContextMode = "per_class",
        init_std: float = 0.02,
        own_context: bool = True,
        biased: int | None = None,
        prompt_mean: PromptMean = "normalized",
        attention: TextAttention = "causal",
    ) -> None:
        """`biased` limits a per-image context bias to the last that many context vectors
        (CondPrompt's image-dependent half); None biases all of them."""
        super().__init__()
        texts, classes = [], []
        for c, words in enumerate(prompts.class_words):
            for word in words:
                rendered = prompts.render_all(word)
                texts += rendered
                classes += [c] * len(rendered)
        token_ids = backbone.tokenize(texts)  # (P, L)
        placeholder_id = backbone.placeholder_id(PLACEHOLDER)
        is_ctx = token_ids == placeholder_id
        counts = is_ctx.sum(dim=1)
        if bool((counts < prompts.n_ctx).any()):  # the tokenizer cut the prompt at its context
            raise AnomedError(
                f"a prompt of {prompts.n_ctx} context vectors does not fit the "
                f"{token_ids.shape[1]}-token text context of {backbone.cfg.model}. Fix: fewer "
                "context vectors (method_args.n_ctx) or a backbone with a longer context."
            )
        if not bool((counts == prompts.n_ctx).all()):
            raise ValueError("a class word tokenizes into the context placeholder; rename it")
        ctx_index = torch.where(
            is_ctx, is_ctx.long().cumsum(dim=1) - 1, torch.zeros_like(token_ids)
        )
        with torch.no_grad():
            frozen = backbone.token_embeddings(token_ids).detach().cpu()  # (P, L, W)
        self.n_classes = len(prompts.class_words)
        self.texts = texts
        self.prompt_mean, self.causal = prompt_mean, attention == "causal"
        group = torch.tensor(prompt_groups(prompts, context))
        self.context_shape = context_shape(prompts, context, backbone.text_width)
        self.ctx = nn.Parameter(torch.randn(self.context_shape) * init_std) if own_context else None
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.text_length = int(token_ids.argmax(dim=-1).max()) + 1  # up to the last end-of-text
        self.register_buffer("frozen", frozen, persistent=False)
        self.register_buffer("is_ctx", is_ctx, persistent=False)
        self.register_buffer("ctx_index", ctx_index, persistent=False)
        self.register_buffer("group", group, persistent=False)
        self.register_buffer("prompt_class", torch.tensor(classes), persistent=False)
        bias_mask = torch.ones(prompts.n_ctx)
        if biased is not None:
            bias_mask[: prompts.n_ctx - biased] = 0.0
        self.register_buffer("bias_mask", bias_mask, persistent=False)  # (n_ctx,)

    def _context(self, ctx: Tensor | None) -> Tensor:
        ctx = self.ctx if ctx is None else ctx
        if ctx is None:
            raise ValueError("this learner does not own its context vectors: pass `ctx`")
        if tuple(ctx.shape) != self.context_shape:
            raise ValueError(f"context has shape {tuple(ctx.shape)}, expected {self.context_shape}")
        return ctx

    def prompt_embeddings(
        self, ctx_bias: Tensor | None = None, ctx: Tensor | None = None
    ) -> Tensor:
        """(P, L, W), or (B, P, L, W) with a per-image context bias (B, W)."""
        ctx = self._context(ctx)[self.group]  # (P, n_ctx, W)
        if ctx_bias is not None:
            bias = ctx_bias[:, None, None, :] * self.bias_mask[:, None]  # (B, 1, n_ctx, W)
            ctx = ctx.unsqueeze(0) + bias  # (B, P, n_ctx, W)
        index = self.ctx_index.unsqueeze(-1).expand(*self.ctx_index.shape, ctx.shape[-1])
        if ctx_bias is not None:
            index = index.unsqueeze(0).expand(ctx.shape[0], *index.shape)
        spliced = torch.gather(ctx, -2, index)  # (..., P, L, W)
        return torch.where(self.is_ctx.unsqueeze(-1), spliced, self.frozen.to(ctx.dtype))

    def forward(
        self, backbone: FrozenCLIP, ctx: Tensor | None = None, ctx_bias: Tensor | None = None
    ) -> Tensor:
        """L2-normalised class features (C, D); (B, C, D) when a context bias (B, W) is given.

        Every call runs the text tower; methods memoise inference-time features in their
        `TextCache`."""
        emb = self.prompt_embeddings(ctx_bias, ctx)
        batch_shape = emb.shape[:-3]
        ids = self.token_ids.expand(*batch_shape, *self.token_ids.shape).reshape(-1, emb.shape[-2])
        feats = backbone.encode_text_embeddings(
            emb.reshape(-1, *emb.shape[-2:]), ids, self.text_length, causal=self.causal
        )
        feats = feats.reshape(*batch_shape, -1, feats.shape[-1])  # (..., P, D)
        return class_means(
            feats, self.prompt_class, self.n_classes, normalize_first=self.prompt_mean != "raw"
        )


def class_means(
    features: Tensor, prompt_class: Tensor, n_classes: int, normalize_first: bool = True
) -> Tensor:
    """Per class, the mean of its prompts' features, normalised: (..., P, D) -> (..., C, D).

    `normalize_first`: each prompt feature is L2-normalised before the mean (CLIP's ensembling);
    False averages them as encoded (the MediCLIP and MadCLIP references)."""
    if normalize_first:
        features = nn.functional.normalize(features, dim=-1)
    onehot = nn.functional.one_hot(prompt_class, n_classes).to(features.dtype)  # (P, C)
    means = torch.einsum("...pd,pc->...cd", features, onehot / onehot.sum(0))
    return nn.functional.normalize(means, dim=-1)


def encode_fixed_prompts(
    backbone: FrozenCLIP,
    class_texts: Sequence[Sequence[str]],
    prompt_mean: PromptMean = "normalized",
) -> Tensor:
    """Hand-crafted prompt ensembles -> class features (C, D): the mean of the normalised
    features, renormalised; `prompt_mean="raw"` averages them as encoded (anomalib's WinCLIP)."""
    texts = [t for texts in class_texts for t in texts]
    classes = torch.tensor([c for c, texts in enumerate(class_texts) for _ in texts])
    feats = backbone.encode_text(texts)
    return class_means(
        feats, classes.to(feats.device), len(class_texts), normalize_first=prompt_mean != "raw"
    )
