"""A frozen open_clip CLIP: load it once, tap transformer blocks, encode text from embeddings."""

from __future__ import annotations

import difflib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import open_clip
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from anomed.backbone.weights_file import check_weights_file
from anomed.config import BackboneConfig
from anomed.errors import AnomedError

CONFIG_DIR = Path(__file__).parent / "model_configs"
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
    tapped: list[Tensor]  # per tapped block, all tokens (B, 1+N, C); index 0 is CLS


_configs_registered = False


def register_model_configs() -> None:
    """Make the project's tiny random-init configs known to open_clip (idempotent)."""
    global _configs_registered
    if not _configs_registered:
        open_clip.add_model_config(CONFIG_DIR)
        _configs_registered = True


def scale_layers(layers: Sequence[int], depth: int, reference: int = REFERENCE_DEPTH) -> list[int]:
    """Map 1-based block indices of a `reference`-deep ViT onto a `depth`-deep one.

    ViT-L-14 (24 blocks) keeps (6, 12, 18, 24); a 6-block tiny model gets (2, 3, 5, 6) for them.
    """
    scaled = [min(depth, max(1, round(layer * depth / reference))) for layer in layers]
    return sorted(set(scaled))


def _unknown_model_error(name: str) -> AnomedError:
    close = difflib.get_close_matches(name, open_clip.list_models(), n=4, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return AnomedError(
        f"unknown open_clip model {name!r}.{hint} Fix: pick a name from "
        "`python -c 'import open_clip; print(open_clip.list_models())'`, an 'hf-hub:org/repo' id, "
        "or 'local-dir:/path' holding open_clip_config.json + weights."
    )


def _fetch_error(cfg: BackboneConfig, exc: Exception) -> AnomedError:
    return AnomedError(
        f"could not fetch pretrained weights for {cfg.model!r} (pretrained={cfg.pretrained!r}): "
        f"{type(exc).__name__}: {str(exc)[:300]}. This machine may be offline. Fix: download the "
        "checkpoint where there is internet (e.g. `open_clip.create_model(...)` caches it under "
        "~/.cache/huggingface) and pass the file: "
        "`--pretrained /path/to/open_clip_model.safetensors` (safetensors only), "
        "or use `--model local-dir:/path` with a folder of config + weights."
    )


def create_clip(cfg: BackboneConfig) -> nn.Module:
    """Build the open_clip model described by `cfg`; the one place where weights are fetched."""
    register_model_configs()
    name = cfg.model
    is_schema = name.startswith(("hf-hub:", "local-dir:"))
    if not is_schema and open_clip.get_model_config(name) is None:
        raise _unknown_model_error(name)
    pretrained = cfg.pretrained
    if pretrained and not is_schema and Path(pretrained).suffix and not Path(pretrained).exists():
        raise AnomedError(f"{pretrained}: no such checkpoint file. Fix: check the path.")
    if pretrained and not is_schema and Path(pretrained).is_file():
        check_weights_file(pretrained)  # a pickle is refused from its first bytes, never loaded
    kwargs = {"force_image_size": cfg.image_size} if cfg.image_size else {}
    if (pretrained or is_schema) and not _hub_reachable():
        _hub_offline()  # fail fast, but still use weights already cached
    try:
        # a random init is seeded (so a checkpoint can rebuild it) without touching the
        # caller's global RNG
        with _quiet_open_clip(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = open_clip.create_model(
                name, pretrained=None if is_schema else pretrained, **kwargs
            )
    except AnomedError:
        raise
    except Exception as exc:  # open_clip raises RuntimeError/OSError/HF errors for fetch failures
        if pretrained or is_schema:
            raise _fetch_error(cfg, exc) from exc
        raise
    return model


class _quiet_open_clip:
    """Silence open_clip's and the hub's log lines (random-init notices, retry chatter).

    Failures still surface as exceptions, which `create_clip` turns into one clear message.
    """

    def __enter__(self) -> None:
        logging.disable(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        logging.disable(logging.NOTSET)


def _hub_offline() -> None:
    """Switch huggingface_hub to offline mode (it reads the variable once, at import)."""
    import huggingface_hub.constants as hub_constants

    os.environ["HF_HUB_OFFLINE"] = "1"
    hub_constants.HF_HUB_OFFLINE = True


def _hub_reachable(host: str = "huggingface.co") -> bool:
    """Whether the hub's name resolves; if not, fetching can only use the local cache."""
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


class FrozenCLIP(nn.Module):
    """A frozen CLIP whose vision tower can be tapped and whose text tower takes embeddings.

    Methods add their trainable parts beside it; nothing here ever receives gradients.
    """

    def __init__(self, model: nn.Module, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = model
        self.text_tower = getattr(model, "text", model)  # CustomTextCLIP keeps it in `.text`
        if not hasattr(self.text_tower, "token_embedding"):
            raise AnomedError(
                f"{cfg.model}: its text tower is not a CLIP transformer (e.g. a Hugging Face "
                "text model); learnable prompts need token embeddings. "
                "Fix: pick a CLIP-style model."
            )
        pool = getattr(self.text_tower, "pool_type", getattr(model, "text_pool_type", "argmax"))
        if pool != "argmax" or getattr(self.text_tower, "cls_emb", None) is not None:
            raise AnomedError(
                f"{cfg.model}: its text tower pools by {pool!r} (or a CoCa class token); anomed "
                "encodes prompts at the end-of-text token (CLIP's argmax pooling). "
                "Fix: pick a CLIP-style model (e.g. ViT-B-16, ViT-L-14)."
            )
        self.visual = model.visual
        if not hasattr(self.visual, "transformer"):
            raise AnomedError(
                f"{cfg.model}: only ViT image towers can be tapped; pick a ViT model."
            )
        self.tokenizer = open_clip.get_tokenizer(cfg.model)
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
        blocks = [*self.visual.transformer.resblocks, *self.text_tower.transformer.resblocks]
        for block in blocks:
            block.compile(**options)

    # ---- geometry -------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return int(self.visual.image_size[0])

    @property
    def patch_size(self) -> int:
        return int(self.visual.patch_size[0])

    @property
    def grid_size(self) -> tuple[int, int]:
        return tuple(self.visual.grid_size)

    @property
    def depth(self) -> int:
        return len(self.visual.transformer.resblocks)

    @property
    def vision_width(self) -> int:
        return int(self.visual.conv1.out_channels)

    @property
    def embed_dim(self) -> int:
        return int(self.visual.output_dim)

    @property
    def text_width(self) -> int:
        return int(self.text_tower.token_embedding.embedding_dim)

    @property
    def logit_scale(self) -> Tensor:
        return self.model.logit_scale.exp()

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
        """Run the vision tower on [0, 1] images, returning the tokens after the given blocks.

        `layers` are 1-based block indices. `block_hook(i, x)` may rewrite the residual stream
        after block i (residual adapters); `patch_hook(tokens)` may rewrite the patch tokens
        before the class token and positional embeddings are added (image prompts).
        Gradients flow only where a hook holds trainable parameters.
        """
        v = self.visual
        x = v.conv1(self.normalize(images).to(v.conv1.weight.dtype))  # (B, C, h, w)
        x = x.flatten(2).transpose(1, 2)  # (B, N, C)
        if patch_hook is not None:
            x = patch_hook(x)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)  # (B, 1+N, C)
        x = v.ln_pre(x)
        take = set(layers)
        last = max(take) if block_hook is None else self.depth
        tapped: list[Tensor] = []
        batch_first = getattr(v.transformer, "batch_first", True)
        for i, block in enumerate(v.transformer.resblocks[:last], start=1):
            x = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
            if block_hook is not None:
                x = block_hook(i, x)
            if i in take:
                tapped.append(x)
        embedding = self._pool(x) if last == self.depth else x.new_zeros(x.shape[0], self.embed_dim)
        return VisionOutput(embedding, tapped)

    def _pool(self, x: Tensor) -> Tensor:
        pooled, _ = self.visual._pool(x)
        return pooled @ self.visual.proj if self.visual.proj is not None else pooled

    def post_norm(self, tokens: Tensor) -> Tensor:
        """The vision tower's final LayerNorm (ln_post) on tokens (B, L, C), not projected: the
        patch tokens open_clip returns beside the pooled embedding."""
        return self.visual.ln_post(tokens)

    def project_tokens(self, tokens: Tensor) -> Tensor:
        """Map tokens (B, L, C) into the joint space the way CLS is (ln_post, proj)."""
        out = self.visual.ln_post(tokens)
        return out @ self.visual.proj if self.visual.proj is not None else out

    def encode_token_subsets(self, images: Tensor, subsets: Tensor, chunk: int = 256) -> Tensor:
        """Embeddings of image windows: CLS plus only the patches of each subset, run through the
        whole tower (WinCLIP's masked windows). subsets: (W, K) patch indices -> (B, W, D)."""
        v = self.visual
        x = v.conv1(self.normalize(images).to(v.conv1.weight.dtype)).flatten(2).transpose(1, 2)
        pos = v.positional_embedding.to(x.dtype)
        x = x + pos[1:]  # (B, N, C) patches with their positions
        cls = (v.class_embedding.to(x.dtype) + pos[0]).expand(x.shape[0], 1, -1)
        out = []
        for part in subsets.to(x.device).split(chunk):  # (w, K) windows at a time
            tokens = x[:, part]  # (B, w, K, C)
            b, w, k, c = tokens.shape
            seq = torch.cat([cls.unsqueeze(1).expand(b, w, 1, c), tokens], dim=2)
            seq = v.ln_pre(seq.reshape(b * w, k + 1, c))
            for block in v.transformer.resblocks:
                seq = block(seq)
            out.append(self._pool(seq).reshape(b, w, -1))
        return torch.cat(out, dim=1)

    # ---- text -----------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """texts -> token ids (T, L)."""
        return self.tokenizer(list(texts))

    def token_embeddings(self, token_ids: Tensor) -> Tensor:
        """token ids (T, L) -> frozen word embeddings (T, L, W)."""
        return self.text_tower.token_embedding(token_ids.to(self.pixel_mean.device))

    def encode_text_embeddings(
        self,
        embeddings: Tensor,
        token_ids: Tensor,
        length: int | None = None,
        causal: bool = True,
    ) -> Tensor:
        """Encode prompts given as embeddings (T, L, W); `token_ids` (T, L) locate end-of-text.

        This is what lets learnable context vectors be spliced in between frozen words. With the
        causal mask (CLIP's own text pass), the padding after the last end-of-text token cannot
        reach it and is cut off (`length`: that position + 1, given by callers that know it,
        which saves a device sync): the features are the same to float rounding, and prompts of
        a few dozen tokens cost a fraction of 77. `causal=False` drops the mask, so every token,
        padding included, attends to every other: how the MediCLIP and MadCLIP references encode
        learnable prompts (their text encoder calls the transformer without `attn_mask`).
        """
        t = self.text_tower
        eot = token_ids.to(embeddings.device).argmax(dim=-1)  # the EOT token has the largest id
        causal = causal and t.attn_mask is not None  # a model without the mask is never causal
        if not causal:
            length = embeddings.shape[1]
        elif length is None:
            length = int(eot.max()) + 1
        x = embeddings[:, :length] + t.positional_embedding[:length].to(embeddings.dtype)
        mask = t.attn_mask[:length, :length] if causal else None
        x = t.transformer(x, attn_mask=mask)
        x = t.ln_final(x)  # (T, length, W)
        x = x[torch.arange(x.shape[0], device=x.device), eot]  # (T, W)
        proj = t.text_projection
        if proj is None:
            return x
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> Tensor:
        """Plain frozen text features (T, D) for hand-crafted prompts."""
        ids = self.tokenize(texts).to(self.pixel_mean.device)
        return self.encode_text_embeddings(self.token_embeddings(ids), ids)


def load_backbone(cfg: BackboneConfig, device: str | torch.device = "cpu") -> FrozenCLIP:
    """Create a frozen CLIP from a config; raises AnomedError with a fix on any user error."""
    return FrozenCLIP(create_clip(cfg), cfg).to(device)


def resize_maps(maps: Tensor, size: int | tuple[int, int]) -> Tensor:
    """maps (B, C, h, w) -> (B, C, H, W), bilinear."""
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)
