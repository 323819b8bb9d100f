"""Text towers behind one interface: open_clip's own text transformer (CLIP, SigLIP, SigLIP2) and
Hugging Face models inside open_clip's `HFTextEncoder` (BiomedCLIP's PubMedBERT).

Both take prompts as word embeddings (T, L, W) plus their token ids (T, L): that is how learnable
context vectors are spliced in between frozen words. Plain text is the same path with the tower's
own word embeddings, so it equals open_clip's `encode_text`.

Like the image adapters, these are plain objects holding references into the open_clip model (the
backbone's state dict stays the model's own).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor, nn


class TextTower(Protocol):
    """What `FrozenCLIP` needs of a text tower."""

    kind: str  # "open_clip-text" or "hf-text"
    width: int  # word-embedding width W (learnable context vectors have it)
    pooling: str  # where the prompt feature is read: argmax, last, first, eos, cls, mean, ...
    causal: bool  # whether the tower was trained with a causal mask
    blocks: Sequence[nn.Module]

    def token_embeddings(self, token_ids: Tensor) -> Tensor: ...
    def encode(
        self, embeddings: Tensor, token_ids: Tensor, length: int | None, causal: bool
    ) -> Tensor: ...


class OpenCLIPText:
    """open_clip's `TextTransformer` (or the text half of a plain `CLIP`): pooled at the
    end-of-text token (`argmax`, CLIP), the last position (`last`, SigLIP: no causal mask), the
    first, or a given end-of-sequence id (`eos`). A CoCa class token is refused."""

    kind = "open_clip-text"

    def __init__(self, tower: nn.Module, model: nn.Module) -> None:
        if getattr(tower, "cls_emb", None) is not None:
            raise TypeError("its text tower appends a CoCa class token (a captioning model)")
        self.t = tower
        self.pooling = getattr(tower, "pool_type", getattr(model, "text_pool_type", "argmax"))
        if self.pooling not in ("argmax", "last", "first", "eos"):
            raise TypeError(f"its text tower pools by {self.pooling!r}")
        self.eos_id = getattr(tower, "eos_id", getattr(model, "text_eos_id", None))
        self.causal = tower.attn_mask is not None
        self.pad_mask = bool(getattr(tower, "use_pad_mask", False))
        self.width = int(tower.token_embedding.embedding_dim)
        self.blocks = tower.transformer.resblocks

    def token_embeddings(self, token_ids: Tensor) -> Tensor:
        return self.t.token_embedding(token_ids)

    def _read_at(self, token_ids: Tensor) -> Tensor:
        """Per prompt, the position whose feature is the prompt's: (T,)."""
        if self.pooling == "argmax":  # CLIP's end-of-text token has the largest id
            return token_ids.argmax(dim=-1)
        if self.pooling == "eos":
            return (token_ids == self.eos_id).int().argmax(dim=-1)
        fill = 0 if self.pooling == "first" else token_ids.shape[1] - 1
        return torch.full_like(token_ids[:, 0], fill)

    def encode(
        self, embeddings: Tensor, token_ids: Tensor, length: int | None = None, causal: bool = True
    ) -> Tensor:
        """With the causal mask, what follows the read position cannot reach it and is cut off
        (`length`: callers that know the last end-of-text position + 1 save a device sync)."""
        t = self.t
        ids = token_ids.to(embeddings.device)
        at = self._read_at(ids)
        causal = causal and self.causal  # a tower without the mask is never causal
        if not causal:
            length = embeddings.shape[1]
        elif length is None or self.pooling != "argmax":
            length = int(at.max()) + 1
        x = embeddings[:, :length] + t.positional_embedding[:length].to(embeddings.dtype)
        mask = t.attn_mask[:length, :length] if causal else None
        if self.pad_mask:  # open_clip's bidirectional towers that mask their padding
            pad = t._build_additive_mask(ids[:, :length], length, x.dtype)
            mask = pad if mask is None else mask.unsqueeze(0) + pad
        x = t.transformer(x, attn_mask=mask)
        x = t.ln_final(x)  # (T, length, W)
        x = x[torch.arange(x.shape[0], device=x.device), at]  # (T, W)
        proj = t.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj


class HFText:
    """A Hugging Face encoder in open_clip's `HFTextEncoder`: prompts enter as `inputs_embeds`
    (the model adds its own positions, token types and norm), padding is masked by id, and the
    encoder's pooler (CLS or mean) and projection (linear or MLP) give the feature. BERT-style
    encoders are bidirectional: the `causal` switch has nothing to act on."""

    kind = "hf-text"
    causal = False

    def __init__(self, encoder: nn.Module) -> None:
        self.e = encoder
        self.embedding = encoder.transformer.get_input_embeddings()
        self.width = int(self.embedding.embedding_dim)
        self.pad_id = encoder.config.pad_token_id
        self.pooling = type(encoder.pooler).__name__
        layers = getattr(getattr(encoder.transformer, "encoder", None), "layer", None)
        self.blocks = list(layers) if layers is not None else []

    def token_embeddings(self, token_ids: Tensor) -> Tensor:
        return self.embedding(token_ids)

    def encode(
        self, embeddings: Tensor, token_ids: Tensor, length: int | None = None, causal: bool = True
    ) -> Tensor:
        mask = (token_ids.to(embeddings.device) != self.pad_id).long()  # (T, L)
        out = self.e.transformer(inputs_embeds=embeddings, attention_mask=mask)
        return self.e.proj(self.e.pooler(out, mask))


def text_tower(model: nn.Module) -> TextTower | None:
    """The adapter for a model's text tower; None for an image-only model. TypeError says why a
    text tower cannot take prompts as embeddings."""
    tower = getattr(model, "text", model)  # CustomTextCLIP keeps it in `.text`
    if hasattr(tower, "pooler") and hasattr(tower, "transformer") and hasattr(tower, "proj"):
        return HFText(tower)
    if hasattr(tower, "token_embedding"):
        return OpenCLIPText(tower, model)
    if tower is model:
        return None
    raise TypeError(f"its text tower ({type(tower).__name__}) takes no token embeddings")
