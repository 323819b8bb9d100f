"""How much anomaly information do a backbone's tapped tokens carry? An oracle linear probe.

A logistic regression is fitted per layer on the patch tokens of half of the *test* images (their
masks as labels; a patch is abnormal when > 30 % of it is lesion) and scored on the other half,
its patch scores upsampled to pixel maps. It cheats with test labels on purpose: it bounds what
any method that puts a linear map on these tokens (MediCLIP's adapters) could reach.

    python benchmarks/feature_probe.py --data runs/demo/phantom --model anomed-tiny
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from anomed.backbone import BackboneConfig, load_backbone
from anomed.data.datasets import load_sample
from anomed.data.layouts import load_dataset
from anomed.metrics import compute_metrics


def tapped_tokens(backbone, images: torch.Tensor, layers: list[int]) -> list[np.ndarray]:
    """Per layer, layer-normed patch tokens (B, N, C) as numpy."""
    out = []
    with torch.no_grad():
        for chunk in images.split(16):
            taps = backbone.encode_image(chunk, layers).tapped
            out.append([F.layer_norm(t[:, 1:], t.shape[-1:]).numpy() for t in taps])
    return [np.concatenate([o[i] for o in out]) for i in range(len(layers))]


def probe_layer(feats, patch_labels, train_idx, test_idx):
    """Fit on train images' patches, return patch scores (B_test, N)."""
    x_tr = feats[train_idx].reshape(-1, feats.shape[-1])
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    clf = LogisticRegression(max_iter=300, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((x_tr - mu) / sd, patch_labels[train_idx].ravel())
    x_te = feats[test_idx].reshape(-1, feats.shape[-1])
    return clf.decision_function((x_te - mu) / sd).reshape(len(test_idx), -1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="anomed-tiny")
    parser.add_argument("--image-size", type=int, default=None)
    args = parser.parse_args()
    backbone = load_backbone(BackboneConfig(model=args.model, image_size=args.image_size))
    size, grid = backbone.image_size, backbone.grid_size
    test = load_dataset(args.data).test
    pairs = [load_sample(s, size) for s in test]
    images = torch.from_numpy(np.stack([p[0].transpose(2, 0, 1) for p in pairs])).float()
    masks = np.stack([p[1] for p in pairs])
    labels = np.array([s.label for s in test])
    frac = F.adaptive_avg_pool2d(torch.from_numpy(masks).float()[:, None], grid).flatten(1)
    patch_labels = (frac > 0.3).numpy()
    order = np.random.default_rng(0).permutation(len(test))
    train_idx, test_idx = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2 :])
    layers = list(range(1, backbone.depth + 1))
    rows = {}
    for layer, feats in zip(layers, tapped_tokens(backbone, images, layers), strict=True):
        scores = torch.from_numpy(probe_layer(feats, patch_labels, train_idx, test_idx)).float()
        maps = F.interpolate(scores.reshape(-1, 1, *grid), size=size, mode="bilinear")[:, 0]
        metrics = compute_metrics(
            labels[test_idx], maps.flatten(1).amax(1).numpy(), masks[test_idx], maps.numpy()
        )
        rows[f"layer {layer}"] = {k: metrics[k] for k in ("image_auroc", "pixel_auroc")}
        print(
            f"layer {layer}: image AUROC {metrics['image_auroc']:.3f}  "
            f"pixel AUROC {metrics['pixel_auroc']:.3f}",
            flush=True,
        )
    print(json.dumps({"model": args.model, "probe": rows}))


if __name__ == "__main__":
    main()
