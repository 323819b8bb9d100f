"""A frozen vision-language backbone: load it once, tap transformer blocks, encode text from
embeddings. The towers themselves are read through adapters (backbone.vision, backbone.text), so
open_clip's ViTs, timm ViTs (BiomedCLIP, SigLIP, SigLIP2, DINOv2) and Hugging Face text towers
all answer the same calls."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomed.backbone.loading import (
    CONFIG_DIR,
    create_clip,
    make_tokenizer,
    model_config,
    register_model_configs,
)
from anomed.backbone.text import TextTower, text_tower
from anomed.backbone.vision import VisionTower, vision_tower
from anomed.config import BackboneConfig
from anomed.errors import AnomedError

__all__ = ["CONFIG_DIR", "create_clip", "register_model_configs"]  # re-exported for callers
REFERENCE_DEPTH = 24  # the papers' layer indices refer to ViT-L-14's 24 blocks

# Pixel normalisation presets: "clip" is open_clip's mean/std of the model; "paper" feeds [0, 1]
# pixels unnormalised (MVFA's reference); "cxr" is PPAD's single chest X-ray mean/std.
PREPROCESS_PRESETS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "clip": None,
    "paper": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "cxr": ((0.39799,) * 3, (0.32721349,) * 3),
}

BlockHook = Callable[[int, Tensor], Tensor]  # (1-based block index, tokens (B, 1+N, C)) -> tokens


class VisionOutput(NamedTuple):
    """What one pass of the vision tower yields."""

    image_embedding: Tensor  # (B, D) projected pooled feature (CLIP's image embedding)
    # per tapped block, tokens (B, 1+N, C): index 0 is the class token (the mean of the patch
    # tokens for towers without one, e.g. SigLIP), [:, 1:] the patches; registers dropped
    tapped: list[Tensor]


TextScoring = Literal["softmax", "sigmoid"]


def scale_layers(layers: Sequence[int], depth: int, reference: int = REFERENCE_DEPTH) -> list[int]:
    """Map 1-based block indices of a `reference`-deep ViT onto a `depth`-deep one.

    ViT-L-14 (24 blocks) keeps (6, 12, 18, 24); a 6-block tiny model gets (2, 3, 5, 6) for them.
    """
    scaled = [min(depth, max(1, round(layer * depth / reference))) for layer in layers]
    return sorted(set(scaled))


class FrozenCLIP(nn.Module):
    """A frozen backbone whose image tower can be tapped and whose text tower takes embeddings.

    Methods add their trainable parts beside it; nothing here ever receives gradients. An
    image-only model (a bare timm ViT) has no text tower: `has_text` is False.
    """

    def __init__(self, model: nn.Module, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.visual = getattr(model, "visual", model)  # a bare timm ViT is its own image tower
        try:
            self.vision: VisionTower = vision_tower(self.visual)
            self.text: TextTower | None = text_tower(model) if self.visual is not model else None
        except TypeError as exc:
            raise AnomedError(
                f"{cfg.model}: {exc}. Fix: pick a ViT model with a CLIP, SigLIP or Hugging Face "
                "text tower (e.g. ViT-B-16, ViT-B-16-SigLIP, a BiomedCLIP local-dir)."
            ) from exc
        if self.text is not None:
            self.text_tower = getattr(model, "text", model)  # CustomTextCLIP keeps it in `.text`
            self.tokenizer = make_tokenizer(cfg, model_config(cfg))
        mean, std = self._norm_stats(model, cfg.preprocess)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def _norm_stats(
        model: nn.Module, preset: str | None
    ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        preset = preset or "clip"  # an unresolved run-level default means the model's own
        if preset not in PREPROCESS_PRESETS:
            raise AnomedError(
                f"unknown preprocess preset {preset!r}; known: {list(PREPROCESS_PRESETS)}"
            )
        stats = PREPROCESS_PRESETS[preset]
        if stats is None:
            pp = open_clip.get_model_preprocess_cfg(model)
            return tuple(pp["mean"]), tuple(pp["std"])
        return stats

    def train(self, mode: bool = True) -> FrozenCLIP:
        """Stay in eval mode: the backbone is frozen (no dropout, fixed norms)."""
        return super().train(False)

    def compile_blocks(self, **options: object) -> None:
        """torch.compile every transformer block of both towers, in place (state dict unchanged).

        Blocks share their code, so one compiled graph serves them all; the first batch of each
        new shape pays the compilation. Off by default (`train.compile`, `--compile`)."""
        text_blocks = list(self.text.blocks) if self.text is not None else []
        for block in [*self.vision.blocks, *text_blocks]:
            block.compile(**options)

    # ---- geometry and scoring -------------------------------------------------------------
    @property
    def has_text(self) -> bool:
        return self.text is not None

    @property
    def image_size(self) -> int:
        return self.vision.image_size

    @property
    def patch_size(self) -> int:
        return self.vision.patch_size

    @property
    def grid_size(self) -> tuple[int, int]:
        return self.vision.grid_size

    @property
    def depth(self) -> int:
        return len(self.vision.blocks)

    @property
    def vision_width(self) -> int:
        return self.vision.width

    @property
    def embed_dim(self) -> int:
        return self.vision.embed_dim

    @property
    def text_width(self) -> int:
        return self._text().width

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp()

    @property
    def logit_bias(self) -> Tensor | None:
        """SigLIP's learnt bias of the sigmoid image-text logit; None for a softmax-trained CLIP."""
        return getattr(self.model, "logit_bias", None)

    @property
    def text_scoring(self) -> TextScoring:
        """How the model turned image-text similarities into probabilities in training: a
        softmax over texts (CLIP) or a sigmoid per pair with a bias (SigLIP)."""
        return "sigmoid" if self.logit_bias is not None else "softmax"

    def layers(self, reference_layers: Sequence[int]) -> list[int]:
        """The paper's block indices (for a 24-block ViT) scaled to this model's depth."""
        return scale_layers(reference_layers, self.depth)

    # ---- vision ---------------------------------------------------------------------------
    def normalize(self, images: Tensor) -> Tensor:
        """images: (B, 3, H, W) in [0, 1] -> the model's normalised input."""
        return (images - self.pixel_mean) / self.pixel_std

    def encode_image(
        self,
        images: Tensor,
        layers: Sequence[int],
        block_hook: BlockHook | None = None,
        patch_hook: Callable[[Tensor], Tensor] | None = None,
    ) -> VisionOutput:
        """Run the image tower on [0, 1] images, returning the tokens after the given blocks.

        `layers` are 1-based block indices. `block_hook(i, x)` may rewrite the tokens
        (B, 1+N, C) after block i (residual adapters); `patch_hook(tokens)` may rewrite the
        patch tokens before the class token and positional embeddings are added (image
        prompts). Gradients flow only where a hook holds trainable parameters.
        """
        v = self.vision
        x = v.embed(self.normalize(images), patch_hook)  # (B, P+N, C)
        take = set(layers)
        last = max(take) if block_hook is None else self.depth
        tapped: list[Tensor] = []
        for i, block in enumerate(v.blocks[:last], start=1):
            x = v.run_block(block, x)
            if block_hook is not None:
                x = v.unview(x, block_hook(i, v.view(x)))
            if i in take:
                tapped.append(v.view(x))
        embedding = v.pool(x) if last == self.depth else x.new_zeros(x.shape[0], self.embed_dim)
        return VisionOutput(embedding, tapped)

    def post_norm(self, tokens: Tensor) -> Tensor:
        """The image tower's final norm on tokens (B, L, C), not projected: the patch tokens
        open_clip returns beside the pooled embedding."""
        return self.vision.post_norm(tokens)

    def project_tokens(self, tokens: Tensor) -> Tensor:
        """Map tokens (B, L, C) into the joint space the way the global feature is (final norm,
        projection; SigLIP: each token through the attention-pool head alone)."""
        return self.vision.project_tokens(tokens)

    def encode_token_subsets(self, images: Tensor, subsets: Tensor, chunk: int = 256) -> Tensor:
        """Embeddings of image windows: the prefix tokens plus only the patches of each subset,
        run through the whole tower (WinCLIP's masked windows). subsets: (W, K) -> (B, W, D)."""
        return self.vision.subsets(self.normalize(images), subsets, chunk)

    # ---- text -----------------------------------------------------------------------------
    def _text(self) -> TextTower:
        if self.text is None:
            raise AnomedError(
                f"{self.cfg.model} is an image-only model; text prompts need a text tower. "
                "Fix: use an image-only method (memorybank) or a vision-language model."
            )
        return self.text

    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """texts -> token ids (T, L)."""
        self._text()
        return self.tokenizer(list(texts))

    def placeholder_id(self, word: str) -> int:
        """The id of a one-token word (the learnable-context placeholder), whatever special
        tokens the tokenizer puts around it (CLIP's start token, BERT's [CLS], none)."""
        ids = self.tokenize([word])[0]
        bare = self.tokenize([""])[0]
        for i, token in enumerate(ids.tolist()):
            if i >= len(bare) or token != int(bare[i]):
                return token
        raise AnomedError(f"the tokenizer of {self.cfg.model} drops {word!r}")

    def token_embeddings(self, token_ids: Tensor) -> Tensor:
        """token ids (T, L) -> frozen word embeddings (T, L, W)."""
        return self._text().token_embeddings(token_ids.to(self.pixel_mean.device))

    def encode_text_embeddings(
        self,
        embeddings: Tensor,
        token_ids: Tensor,
        length: int | None = None,
        causal: bool = True,
    ) -> Tensor:
        """Encode prompts given as embeddings (T, L, W); `token_ids` (T, L) locate the token
        whose feature is read (CLIP: end-of-text; SigLIP: the last position; BERT: the pooler's).

        This is what lets learnable context vectors be spliced in between frozen words. With the
        causal mask (CLIP's own text pass), the padding after the last end-of-text token cannot
        reach it and is cut off (`length`: that position + 1, given by callers that know it,
        which saves a device sync): the features are the same to float rounding, and prompts of
        a few dozen tokens cost a fraction of 77. `causal=False` drops the mask, so every token,
        padding included, attends to every other: how the MediCLIP and MadCLIP references encode
        learnable prompts (their text encoder calls the transformer without `attn_mask`). Towers
        trained without the mask (SigLIP, BERT) are always bidirectional.
        """
        return self._text().encode(embeddings, token_ids, length, causal)

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Plain frozen text features (T, D) for hand-crafted prompts."""
        ids = self.tokenize(texts).to(self.pixel_mean.device)
        return self.encode_text_embeddings(self.token_embeddings(ids), ids)


def load_backbone(cfg: BackboneConfig, device: str | torch.device = "cpu") -> FrozenCLIP:
    """Create a frozen backbone from a config; raises AnomedError with a fix on any user error."""
    return FrozenCLIP(create_clip(cfg), cfg).to(device)


def resize_maps(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """maps (B, C, h, w) -> (B, C, H, W), bilinear."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
