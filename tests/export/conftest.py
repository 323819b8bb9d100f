"""Saved runs of every exportable method on the tiny backbone, made without a training loop:
the method's prepare() (memory banks, validation statistics) on phantom shots, trainable weights
nudged away from their initialisation, and a threshold at the median test score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomed.config import BackboneConfig, RunConfig
from anomed.data.datasets import SupportSet, load_support
from anomed.data.layouts import load_dataset
from anomed.engine.checkpoint import Calibration, CheckpointInfo, save_checkpoint
from anomed.methods import create_method

METHOD_ARGS = {
    "mediclip": {"n_ctx": 4},
    "mvfa": {"coreset": 0.5},
    "madclip": {"n_ctx": 4},
    "condprompt": {"n_ctx": 4},
    "memorybank": {"coreset": 0.5},
    "winclip": {},
    "winclip+": {},
    "ppad": {"n_ctx": 4},
    "mlalp": {"coreset": 0.5, "n_ctx": 4},
}


def _labelled(normal: SupportSet) -> SupportSet:
    """The normal shots plus two with a bright square (labelled abnormal, with masks)."""
    images, masks = list(normal.images), [np.zeros(im.shape[:2], bool) for im in normal.images]
    for im in normal.images[:2]:
        im, mask = im.copy(), np.zeros(im.shape[:2], bool)
        mask[30:60, 40:70] = True
        im[mask] = 0.95
        images.append(im)
        masks.append(mask)
    labels = [0] * len(normal.images) + [1, 1]
    return SupportSet(images, labels, masks, [True] * len(images), normal.clsname)


def make_run(folder, name: str, backbone, data_root, threshold=True, model="anomed-tiny"):
    """A saved run of `name` whose dataset is `data_root` (its test images drive the checks)."""
    splits = load_dataset(data_root)
    size = backbone.image_size
    normal = load_support([s for s in splits.train if s.label == 0][:3], size, "brain")
    torch.manual_seed(0)
    method = create_method(name, backbone, METHOD_ARGS[name])
    support = normal if method.normal_only else _labelled(normal)
    method.setup([support], "brain", target=support)
    if not method.normal_only:
        method.train_dataset([support], seed=0)
        method.validation_items(support, seed=0)
    with torch.no_grad():
        for p in method.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    method.prepare()
    method.eval()
    cfg = RunConfig(method=name, method_args=METHOD_ARGS[name])
    cfg.backbone = BackboneConfig(model=model, image_size=size)
    cfg.data.root = str(data_root)
    cal = Calibration()
    if threshold:
        test = load_support(splits.test, size)
        with torch.no_grad():
            batch = torch.from_numpy(np.stack(test.images).transpose(0, 3, 1, 2))
            out = method(batch)
        scores = out.image_score.sort().values
        middle = len(scores) // 2  # halfway between two scores: no score sits on it
        cal = Calibration(
            threshold=float(scores[middle - 1] + scores[middle]) / 2,
            map_min=float(out.anomaly_map.min()),
            map_max=float(out.anomaly_map.max()),
        )
    save_checkpoint(folder, method, CheckpointInfo(run=cfg, calibration=cal, class_name="brain"))
    return folder


@pytest.fixture(scope="session")
def run_factory(tiny_backbone, phantom_root, tmp_path_factory):
    """make(name) -> a saved run folder of that method (made once per session)."""
    made = {}

    def make(name: str):
        if name not in made:
            folder = tmp_path_factory.mktemp("runs") / name.replace("+", "plus")
            made[name] = make_run(folder, name, tiny_backbone, phantom_root)
        return made[name]

    return make


@pytest.fixture(scope="session")
def run_maker():
    """make_run itself, for runs on other backbones (see test_quantize's ViT-B-16 test)."""
    return make_run
