"""The training loop every method shares: batches, AMP on GPU, validation-based selection."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from anomed.config import TrainConfig
from anomed.data.datasets import collate
from anomed.engine.cache import build_feature_cache, cached_validation
from anomed.engine.device import autocast, to_device
from anomed.engine.evaluate import EvalResult, evaluate_items, run_batches
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod


@dataclass
class FitResult:
    """What training produced beside the weights (kept in the method)."""

    epochs: int
    best_epoch: int
    selected_by: str  # "val", "last" or "test-leak" (leaks test labels: papers' habit)
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    cached: bool = False  # frozen features came from the feature cache (engine.cache)


def resolve_schedule(
    method: AnomalyMethod, epochs: int | None, batch_size: int | None, n_items: int
) -> tuple[int, int]:
    """(epochs, batch size) of a run, the one place they are resolved: the given values, else
    the method's; training-free methods get 0 epochs; a method batch size of 0 means all items
    in one batch (PPAD)."""
    epochs = epochs or method.cfg.epochs
    if not method.trainable_parameters():
        epochs = 0
    return epochs, batch_size or method.cfg.batch_size or max(1, n_items)


def selection_score(metrics: dict[str, float | None]) -> float:
    """Mean of the defined AUROCs (image and pixel): what 'best epoch' means."""
    values = [metrics.get(k) for k in ("image_auroc", "pixel_auroc")]
    values = [v for v in values if v is not None and not math.isnan(v)]
    return sum(values) / len(values) if values else float("-inf")


def _batches(loader: DataLoader, dataset: Dataset, epoch: int) -> Iterator[dict]:
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    yield from loader


def train_epoch(
    method: AnomalyMethod,
    batches: Iterable[dict],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    amp: bool,
) -> float:
    """One pass of optimizer steps; the mean loss (read once, not synchronising every step)."""
    total, steps = torch.zeros((), device=device), 0
    for batch in batches:
        batch = to_device(batch, device)
        with autocast(device, amp):
            loss = method.training_step(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        method.on_optimizer_step()  # e.g. memoised class text is stale now
        if scheduler is not None:
            scheduler.step()
        total += loss.detach().float()
        steps += 1
    return float(total) / max(1, steps)


def _validator(
    method: AnomalyMethod,
    val_items: Sequence[dict],
    select: str,
    batch_size: int,
    device: torch.device,
    amp: bool,
    test_eval: Callable[[], EvalResult] | None,
    cached: bool,
) -> Callable[[], dict[str, float | None]]:
    """What one validation pass measures: the test set (test-leak), else the validation items,
    whose frozen features are computed once when the method's features are cached."""
    val_batches: list[dict] = []

    def validate() -> dict[str, float | None]:
        method.prepare()
        if select == "test-leak":
            return test_eval().metrics
        if not cached:
            return evaluate_items(method, val_items, batch_size, device, amp).metrics
        if not val_batches:
            val_batches.extend(cached_validation(method, list(val_items), batch_size, device, amp))
        return run_batches(method, val_batches, device, amp).metrics

    return validate


def fit(
    method: AnomalyMethod,
    train_set: Dataset,
    val_items: Sequence[dict],
    cfg: TrainConfig,
    epochs: int,
    batch_size: int,
    device: torch.device,
    test_eval: Callable[[], EvalResult] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> FitResult:
    """Train `method` in place; keep the weights of the selected epoch."""
    select = _selection_mode(cfg, val_items, test_eval, log)
    generator = torch.Generator().manual_seed(cfg.seed)
    if epochs == 0 or len(train_set) == 0:  # training-free methods (memory bank, WinCLIP)
        epochs = 0
    else:
        loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=True,
            generator=generator,
            collate_fn=collate,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda",
        )
        optimizer = method.configure_optimizer()
        scheduler = method.configure_scheduler(optimizer, epochs * len(loader))
    result = FitResult(epochs=epochs, best_epoch=epochs, selected_by=select)
    best_score, best_state = float("-inf"), None
    start = time.perf_counter()
    cache = build_feature_cache(method, train_set, epochs, device, cfg, log, progress)
    result.cached = cache is not None
    validate = _validator(
        method, val_items, select, batch_size, device, cfg.amp, test_eval, result.cached
    )
    bar = tqdm(range(1, epochs + 1), desc=f"train {method.name}", disable=not progress, unit="ep")
    for epoch in bar:
        method.train()
        batches = (
            cache.batches(epoch, batch_size, generator)
            if cache is not None
            else _batches(loader, train_set, epoch)
        )
        steps = -(-len(cache) // batch_size) if cache is not None else len(loader)
        batches = tqdm(
            batches,
            total=steps,
            desc=f"epoch {epoch}",
            unit="batch",
            leave=False,
            disable=not progress,
            delay=2,
        )  # shown only for epochs over 2 s
        loss = train_epoch(method, batches, optimizer, scheduler, device, cfg.amp)
        row = {"epoch": epoch, "loss": loss}
        if select != "last" and (epoch % cfg.val_every == 0 or epoch == epochs):
            metrics = validate()
            row.update({f"{select}_{k}": v for k, v in metrics.items() if v is not None})
            score = selection_score(metrics)
            if score > best_score:
                best_score, result.best_epoch = score, epoch
                best_state = copy.deepcopy(method.trainable_state_dict())
        result.history.append(row)
        bar.set_postfix(loss=f"{loss:.4f}")
        if epoch == 1 or epoch % cfg.val_every == 0 or epoch == epochs:
            log(_format_row(row))
    if best_state is not None:
        method.load_trainable_state_dict(best_state)
    method.prepare()
    result.seconds = time.perf_counter() - start
    return result


def _selection_mode(
    cfg: TrainConfig,
    val_items: Sequence[dict],
    test_eval: Callable[[], EvalResult] | None,
    log: Callable[[str], None],
) -> str:
    select = cfg.select or "val"  # an unresolved preset default (runs resolve it first)
    if select == "test-leak" and test_eval is None:
        raise AnomedError("--select test-leak needs a test set to peek at")
    if select == "val" and not val_items:
        log(
            "no validation images left in the training pool (k uses them all): keeping the "
            "last epoch instead of selecting on validation"
        )
        return "last"
    return select


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']:4d}", f"loss {row['loss']:.4f}"]
    parts += [f"{k} {v:.3f}" for k, v in row.items() if k not in ("epoch", "loss")]
    return "  ".join(parts)
