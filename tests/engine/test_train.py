"""The shared training loop on a toy method: which epoch's weights a run keeps, and why."""

import numpy as np
import torch
from torch import nn

from anomed.config import TrainConfig
from anomed.data.datasets import ItemsDataset, to_item
from anomed.engine.train import fit, resolve_schedule
from anomed.methods.base import AnomalyMethod, AnomalyOutput, MethodConfig


class Toy(AnomalyMethod):
    """score = w * (image mean); each step lowers w by lr (loss = w), so the validation AUROC
    is 1 while w > 0 and 0 once w < 0."""

    name = "toy"

    def __init__(self) -> None:
        super().__init__(backbone=nn.Identity(), cfg=MethodConfig(epochs=5, batch_size=2, lr=0.3))
        self.w = nn.Parameter(torch.tensor(1.0))

    def configure_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.w], lr=self.cfg.lr)

    def training_step(self, batch):
        return {"loss": self.w * torch.ones(())}

    def forward(self, images):
        score = self.w * images.mean(dim=(1, 2, 3))
        return AnomalyOutput(score[:, None, None].expand(-1, *images.shape[-2:]), score)


def _items(values, labels):
    return [
        to_item(np.full((4, 4, 3), v, np.float32), np.zeros((4, 4), bool), y, i, has_mask=False)
        for i, (v, y) in enumerate(zip(values, labels, strict=True))
    ]


TRAIN = ItemsDataset(_items([0.5, 0.5], [0, 0]))  # 2 items, batch 2: one step per epoch
VAL = _items([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])


def _fit(select="val", val=VAL, test_eval=None):
    method, logs = Toy(), []
    cfg = TrainConfig(select=select, val_every=1, seed=0)
    result = fit(method, TRAIN, val, cfg, 5, 2, torch.device("cpu"), test_eval, False, logs.append)
    return method, result, logs


def test_validation_keeps_the_first_best_epoch_and_its_weights():
    method, result, _ = _fit()
    assert result.selected_by == "val" and result.best_epoch == 1
    assert abs(method.w.item() - 0.7) < 1e-6  # w after one step, not after five
    aurocs = [row["val_image_auroc"] for row in result.history]
    assert aurocs == [1.0, 1.0, 1.0, 0.0, 0.0]  # w: 0.7, 0.4, 0.1, -0.2, -0.5


def test_last_keeps_the_final_weights():
    method, result, _ = _fit(select="last")
    assert result.best_epoch == 5 and abs(method.w.item() + 0.5) < 1e-6


def test_without_validation_images_the_last_epoch_is_kept_and_said():
    method, result, logs = _fit(val=[])
    assert result.selected_by == "last" and "keeping the last epoch" in logs[0]


def test_test_leak_selects_on_the_test_set_it_is_given():
    from anomed.engine.evaluate import evaluate_items

    calls, method, logs = [], Toy(), []

    def test_eval():
        calls.append(1)
        return evaluate_items(method, VAL, 4, torch.device("cpu"))

    cfg = TrainConfig(select="test-leak", val_every=1)
    result = fit(method, TRAIN, [], cfg, 5, 2, torch.device("cpu"), test_eval, False, logs.append)
    assert result.selected_by == "test-leak" and len(calls) == 5 and result.best_epoch == 1


def test_schedule_resolution():
    method = Toy()
    assert resolve_schedule(method, None, None, 10) == (5, 2)  # the method's defaults
    assert resolve_schedule(method, 3, 4, 10) == (3, 4)  # the run's values win
    method.w.requires_grad_(False)
    assert resolve_schedule(method, 3, None, 10)[0] == 0  # nothing to train
    method.cfg.batch_size = 0
    assert resolve_schedule(method, None, None, 10)[1] == 10  # 0: all items in one batch
