"""A trained method as one traceable graph: normalised images in, (anomaly map, score) out.

At inference every method's forward depends only on the image once a few things are fixed:
text features of learnt or hand-crafted prompts (computed once from the text tower), memory
banks of normal patches, and validation statistics (buffers already). `freeze_for_export`
replaces each of them with a constant held by `ExportGraph`, so the traced graph holds no
Python state and no per-call text pass (CondPrompt is the exception: its prompts are conditioned
on each image, so its text tower stays in the graph).

The graph input is the *normalised* image batch, (B, 3, S, S) float32 RGB,
`(pixels in [0, 1] - mean) / std` with the backbone preset's mean and std: the backbone's own
`normalize` is switched off while tracing, so nothing is normalised twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import deepcopy

import torch
from torch import Tensor, nn

from anomed.errors import AnomedError
from anomed.memory_bank import MemoryBank
from anomed.methods.base import AnomalyMethod


class GraphBank(nn.Module):
    """A `MemoryBank` with the same `score` contract, written in ops ONNX can express.

    The bank is a constant; the search runs over fixed bank chunks (unrolled in the graph), with
    every query of the batch at once, so the batch size stays dynamic. Euclidean distances use
    the expansion torch.cdist uses (`[-2q, |q|^2, 1] @ [b, 1, |b|^2]^T`), clamped and rooted."""

    def __init__(self, bank: MemoryBank, chunk: int = 4096) -> None:
        super().__init__()
        self.distance, self.chunk, self.n_layers = bank.distance, chunk, len(bank.banks)
        for i, layer in enumerate(bank.banks):  # already prepared: float32, unit rows (cosine)
            layer = layer.detach().float().cpu()
            if self.distance == "euclidean":  # (M, D + 2) = [b, 1, |b|^2]
                ones = torch.ones(layer.shape[0], 1)
                layer = torch.cat([layer, ones, (layer * layer).sum(-1, keepdim=True)], dim=-1)
            self.register_buffer(f"layer{i}", layer.contiguous())

    def _nearest(self, query: Tensor, bank: Tensor) -> Tensor:
        """query (Q, D) -> distance to the nearest bank row (Q,)."""
        if self.distance == "cosine":
            query = nn.functional.normalize(query, dim=-1)
        else:
            sq = (query * query).sum(-1, keepdim=True)
            query = torch.cat([-2.0 * query, sq, torch.ones_like(sq)], dim=-1)  # (Q, D + 2)
        best = None
        for start in range(0, bank.shape[0], self.chunk):
            sims = query @ bank[start : start + self.chunk].t()  # (Q, c)
            if self.distance == "cosine":
                d = (1.0 - sims).clamp(0.0, 2.0).amin(dim=1)
            else:
                d = sims.clamp_min(0.0).sqrt().amin(dim=1)
            best = d if best is None else torch.minimum(best, d)
        return best

    def score(self, query: Sequence[Tensor], chunk: int = 0, bank_chunk: int = 0) -> list[Tensor]:
        """query: per layer (B, N, D) -> per layer nearest-normal distance (B, N)."""
        out = []
        for i, q in enumerate(query):
            d = self._nearest(q.reshape(-1, q.shape[-1]).float(), getattr(self, f"layer{i}"))
            out.append(d.reshape(q.shape[:-1]))
        return out


class ExportGraph(nn.Module):
    """The method on normalised images -> (anomaly_map (B, S, S), score (B,)), both float32."""

    def __init__(self, method: AnomalyMethod) -> None:
        super().__init__()
        self.method = method
        self.constants = nn.ParameterDict()  # folded text features (not trainable)
        self.banks = nn.ModuleDict()

    def constant(self, name: str, value: Tensor) -> Callable[..., Tensor]:
        """Hold `value` as a named graph constant; returns a function that yields it."""
        self.constants[name] = nn.Parameter(value.detach().float().clone(), requires_grad=False)
        return lambda *args, **kwargs: self.constants[name]

    def bank(self, name: str, bank: MemoryBank | None) -> GraphBank | None:
        if bank is None:
            return None
        self.banks[name] = GraphBank(bank)
        return self.banks[name]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        backbone = self.method.backbone
        backbone.normalize = _identity  # the input is normalised already (for this call only)
        try:
            out = self.method(images)
        finally:
            del backbone.normalize
        return out.anomaly_map.float(), out.image_score.float()


def _identity(images: Tensor) -> Tensor:
    return images


# ---- per-method recipes: what to fold into constants -----------------------------------------


def _mediclip(graph: ExportGraph, m) -> None:
    m.class_text = graph.constant("class_text", m.class_text())  # learnt prompts -> (2, D)


def _labelled(graph: ExportGraph, m) -> None:
    """MVFA, MLA-LP, MadCLIP: the class text of the target (learnt or fixed) and, for MVFA, the
    memory banks; the `stats` buffers (validation ranges) are constants already."""
    m.class_text = graph.constant("class_text", m.class_text(m.class_name))
    if hasattr(m, "bank_seg"):
        m.bank_seg = graph.bank("bank_seg", m.bank_seg)
        m.bank_det = graph.bank("bank_det", m.bank_det)


def _memorybank(graph: ExportGraph, m) -> None:
    if m.bank is None:
        raise AnomedError("memorybank: the checkpoint holds no memory bank (no normal shots)")
    m.bank = graph.bank("bank", m.bank)


def _winclip(graph: ExportGraph, m) -> None:
    m.class_text = graph.constant("class_text", m.class_text())
    m.banks = {name: graph.bank(name, bank) for name, bank in m.banks.items()}


def _ppad(graph: ExportGraph, m) -> None:
    m.text_features = graph.constant("text_features", m.text_features())  # (5, 2, D)


def _condprompt(graph: ExportGraph, m) -> None:
    """Nothing to fold: the prompts are conditioned on each image (meta-net bias), so the text
    tower runs inside the graph on the frozen word embeddings."""


RECIPES: dict[str, Callable[[ExportGraph, AnomalyMethod], None]] = {
    "mediclip": _mediclip,
    "mvfa": _labelled,
    "mlalp": _labelled,
    "madclip": _labelled,
    "condprompt": _condprompt,
    "memorybank": _memorybank,
    "winclip": _winclip,
    "winclip+": _winclip,
    "ppad": _ppad,
}
# Methods whose forward cannot become one fixed graph, with the reason (one line each).
NOT_EXPORTABLE: dict[str, str] = {}


def check_exportable(method: AnomalyMethod) -> None:
    """Raise the one-line reason why `method` cannot be exported, if it cannot."""
    name = method.name
    if name in NOT_EXPORTABLE:
        raise AnomedError(f"{name}: cannot be exported to ONNX: {NOT_EXPORTABLE[name]}")
    if name not in RECIPES:
        raise AnomedError(
            f"{name}: no ONNX export recipe (what to fold into constants is not known for this "
            f"method). Exportable: {', '.join(sorted(RECIPES))}."
        )
    if getattr(method.cfg, "normalization", "val") in ("test", "paper"):
        raise AnomedError(
            f"{name}: cannot be exported to ONNX with normalization=test: its scores are "
            "min-max normalised over the whole test set, so one image's score is not a function "
            "of that image. Fix: retrain with the default normalization (val)."
        )


@torch.no_grad()
def freeze_for_export(method: AnomalyMethod, copy: bool = True) -> ExportGraph:
    """The graph module of `method` with its text features and banks folded into constants.

    With `copy` the method is copied first (sharing the frozen backbone, which is not changed),
    so `method` itself still runs as before; without it `method` is changed in place (saves the
    memory of a second bank when it is a throw-away, e.g. freshly loaded from a checkpoint)."""
    check_exportable(method)
    if copy:
        method = deepcopy(method, memo={id(method.backbone): method.backbone})
    graph = ExportGraph(method.eval())
    RECIPES[method.name](graph, method)
    return graph.eval()
