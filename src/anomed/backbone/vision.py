"""Image towers behind one interface: open_clip's own ViT and timm ViTs (inside open_clip's
`TimmModel`, or bare, image-only).

Every tower is read through the same steps, so `FrozenCLIP.encode_image` can tap any of them:
`embed` (patch tokens, prefix tokens, positions: the residual stream before block 1), its `blocks`,
`view` (the stream as the project's token layout (B, 1+N, C)) and `pool` (the model's own global
embedding from the stream after the last block).

The token layout every method reads: index 0 is the class token, [:, 1:] the N patch tokens.
Register tokens are dropped. A tower without a class token (SigLIP's attention-pool head, timm's
`class_token=False`) puts the mean of its patch tokens at index 0, so "index 0 is a global token"
holds everywhere; its real global feature is the attention pool's, in `image_embedding`.

The adapters are plain objects, not modules: they hold references into the open_clip model, so
the backbone's state dict (what fingerprints and checkpoints see) stays the model's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn

PatchHook = Callable[[Tensor], Tensor]  # patch tokens (B, N, C) -> (B, N, C), before positions


class VisionTower(Protocol):
    """What `FrozenCLIP` needs of an image tower."""

    kind: str  # "open_clip-vit" or "timm-vit"
    image_size: int
    patch_size: int
    grid_size: tuple[int, int]
    width: int  # token width C
    embed_dim: int  # width of the global embedding D
    has_class_token: bool
    blocks: Sequence[nn.Module]

    def embed(self, images: Tensor, patch_hook: PatchHook | None) -> Tensor: ...
    def run_block(self, block: nn.Module, x: Tensor) -> Tensor: ...
    def view(self, x: Tensor) -> Tensor: ...
    def unview(self, x: Tensor, view: Tensor) -> Tensor: ...
    def pool(self, x: Tensor) -> Tensor: ...
    def post_norm(self, tokens: Tensor) -> Tensor: ...
    def project_tokens(self, tokens: Tensor) -> Tensor: ...
    def subsets(self, images: Tensor, subsets: Tensor, chunk: int) -> Tensor: ...


class OpenCLIPViT:
    """open_clip's `VisionTransformer`: conv1 patches, class token, ln_pre, resblocks, ln_post,
    its own pooling (`_pool`) and `proj`. The arithmetic is the one anomed always ran."""

    kind = "open_clip-vit"
    has_class_token = True

    def __init__(self, visual: nn.Module) -> None:
        self.v = visual
        self.blocks = visual.transformer.resblocks
        self.image_size = int(visual.image_size[0])
        self.patch_size = int(visual.patch_size[0])
        self.grid_size = tuple(visual.grid_size)
        self.width = int(visual.conv1.out_channels)
        self.embed_dim = int(visual.output_dim)
        self._batch_first = getattr(visual.transformer, "batch_first", True)

    def _patches(self, images: Tensor) -> Tensor:
        x = self.v.conv1(images.to(self.v.conv1.weight.dtype))  # (B, C, h, w)
        return x.flatten(2).transpose(1, 2)  # (B, N, C)

    def embed(self, images: Tensor, patch_hook: PatchHook | None) -> Tensor:
        v = self.v
        x = self._patches(images)
        if patch_hook is not None:
            x = patch_hook(x)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)  # (B, 1+N, C)
        return v.ln_pre(x)

    def run_block(self, block: nn.Module, x: Tensor) -> Tensor:
        return block(x) if self._batch_first else block(x.transpose(0, 1)).transpose(0, 1)

    def view(self, x: Tensor) -> Tensor:
        return x

    def unview(self, x: Tensor, view: Tensor) -> Tensor:
        return view

    def pool(self, x: Tensor) -> Tensor:
        pooled, _ = self.v._pool(x)
        return pooled @ self.v.proj if self.v.proj is not None else pooled

    def post_norm(self, tokens: Tensor) -> Tensor:
        return self.v.ln_post(tokens)

    def project_tokens(self, tokens: Tensor) -> Tensor:
        out = self.v.ln_post(tokens)
        return out @ self.v.proj if self.v.proj is not None else out

    def subsets(self, images: Tensor, subsets: Tensor, chunk: int) -> Tensor:
        v = self.v
        pos = v.positional_embedding
        x = self._patches(images)
        x = x + pos[1:].to(x.dtype)  # (B, N, C) patches with their positions
        cls = (v.class_embedding.to(x.dtype) + pos[0].to(x.dtype)).expand(x.shape[0], 1, -1)
        return _window_pass(self, cls, x, subsets, chunk, v.ln_pre)


class TimmViT:
    """A timm `VisionTransformer` (BiomedCLIP's, SigLIP's, DINOv2's): `trunk.blocks` are tapped;
    prefix tokens (class token, registers) are known from `num_prefix_tokens`. `head` is what
    open_clip's `TimmModel` puts after the trunk's own pooling (BiomedCLIP's linear projection;
    empty for SigLIP, whose projection is the trunk's classifier); None for a bare timm model."""

    kind = "timm-vit"

    def __init__(self, trunk: nn.Module, head: nn.Module | None = None) -> None:
        if not hasattr(trunk, "blocks") or not hasattr(trunk, "_pos_embed"):
            raise TypeError(f"{type(trunk).__name__} is not a timm VisionTransformer")
        self.t, self.head = trunk, head
        self.blocks = trunk.blocks
        pe = trunk.patch_embed
        self.image_size = int(pe.img_size[0])
        self.patch_size = int(pe.patch_size[0])
        self.grid_size = tuple(int(g) for g in pe.grid_size)
        self.width = int(trunk.embed_dim)
        self.prefix = int(trunk.num_prefix_tokens)
        self.has_class_token = trunk.cls_token is not None
        with torch.no_grad():
            probe = self.pool(torch.zeros(1, self.prefix + 1, self.width))
        self.embed_dim = int(probe.shape[-1])

    def _patches(self, images: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        x = self.t.patch_embed(images)  # (B, N, C), or (B, h, w, C) with a dynamic image size
        return x.reshape(x.shape[0], -1, x.shape[-1]), tuple(x.shape)

    def embed(self, images: Tensor, patch_hook: PatchHook | None) -> Tensor:
        x, shape = self._patches(images)
        if patch_hook is not None:
            x = patch_hook(x)
        x = self.t._pos_embed(x.reshape(shape))  # (B, P+N, C)
        x = self.t.patch_drop(x)
        return self.t.norm_pre(x)

    def run_block(self, block: nn.Module, x: Tensor) -> Tensor:
        return block(x)

    def view(self, x: Tensor) -> Tensor:
        """(B, P+N, C) -> (B, 1+N, C): the class token (or the mean of the patches) + patches."""
        patches = x[:, self.prefix :]
        first = x[:, :1] if self.has_class_token else patches.mean(dim=1, keepdim=True)
        return torch.cat([first, patches], dim=1)

    def unview(self, x: Tensor, view: Tensor) -> Tensor:
        """Put a rewritten view back into the stream: registers are kept as they were; a
        rewritten index 0 replaces the class token (a mean of patches has nowhere to go)."""
        keep = [view[:, :1]] if self.has_class_token else []
        first_reg = 1 if self.has_class_token else 0
        return torch.cat([*keep, x[:, first_reg : self.prefix], view[:, 1:]], dim=1)

    def pool(self, x: Tensor) -> Tensor:
        x = self.t.forward_head(self.t.norm(x))  # the trunk's pooling, fc_norm and classifier
        return self.head(x) if self.head is not None else x

    def post_norm(self, tokens: Tensor) -> Tensor:
        return self.t.norm(tokens)

    def project_tokens(self, tokens: Tensor) -> Tensor:
        """Each token through the global head on its own (B, L, C) -> (B, L, D): with an
        attention pool (SigLIP) each token is pooled as a one-token sequence."""
        b, n, c = tokens.shape
        x = self.t.norm(tokens)
        if self.t.attn_pool is not None:
            x = self.t.attn_pool(x.reshape(b * n, 1, c)).reshape(b, n, -1)
        x = self.t.head(self.t.fc_norm(x))
        x = self.head(x) if self.head is not None else x
        return x

    def subsets(self, images: Tensor, subsets: Tensor, chunk: int) -> Tensor:
        patches, shape = self._patches(images)
        x = self.t._pos_embed(patches.reshape(shape))  # (B, P+N, C)
        prefix, patches = x[:, : self.prefix], x[:, self.prefix :]  # positions added already
        return _window_pass(self, prefix, patches, subsets, chunk, self.t.norm_pre)


def _window_pass(
    tower: VisionTower,
    prefix: Tensor,
    patches: Tensor,
    subsets: Tensor,
    chunk: int,
    pre: nn.Module,
) -> Tensor:
    """Global embeddings of image windows: the prefix tokens (B, P, C) plus only the patches
    (B, N, C) of each subset (W, K), run through the whole tower -> (B, W, D)."""
    out = []
    b, p, c = prefix.shape
    for part in subsets.to(patches.device).split(chunk):  # (w, K) windows at a time
        tokens = patches[:, part]  # (B, w, K, C)
        w, k = tokens.shape[1:3]
        seq = torch.cat([prefix.unsqueeze(1).expand(b, w, p, c), tokens], dim=2)
        seq = pre(seq.reshape(b * w, p + k, c))
        for block in tower.blocks:
            seq = tower.run_block(block, seq)
        out.append(tower.pool(seq).reshape(b, w, -1))
    return torch.cat(out, dim=1)


def vision_tower(visual: nn.Module) -> VisionTower:
    """The adapter for an image tower, or TypeError saying why it cannot be tapped."""
    if hasattr(visual, "transformer") and hasattr(visual, "conv1"):
        return OpenCLIPViT(visual)
    trunk = getattr(visual, "trunk", None)
    if trunk is not None:  # open_clip's TimmModel
        return TimmViT(trunk, visual.head)
    if hasattr(visual, "blocks") and hasattr(visual, "_pos_embed"):
        return TimmViT(visual)
    raise TypeError(
        f"its image tower ({type(visual).__name__}) is not a ViT; only transformer blocks can "
        "be tapped"
    )
