"""Every method on every backbone shape: trains one epoch and evaluates (one quick pairing per
backbone in the default suite, the whole matrix marked slow), save -> load -> predict gives the
same scores, ONNX export, and the one-line refusals before any data is read."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import anomed
from anomed.errors import AnomedError
from anomed.export.pipeline import export_run
from anomed.methods import METHODS

BACKBONES = ["anomed-tiny-biomedclip", "anomed-tiny-siglip", "anomed-tiny-siglip2"]
IMAGE_ONLY = "timm:test_vit2"  # a bare timm ViT with a register token (DINOv2-like)
QUICK = [  # each backbone once, through each text path (embeddings, plain text, none)
    pytest.param("anomed-tiny-biomedclip", "ppad", marks=pytest.mark.slow),
    ("anomed-tiny-siglip", "mediclip"),
    pytest.param("anomed-tiny-siglip2", "winclip", marks=pytest.mark.slow),
    (IMAGE_ONLY, "memorybank"),
]
MATRIX = [(b, m) for b in BACKBONES for m in METHODS] + [(IMAGE_ONLY, "memorybank")]


def _train(root, model: str, method: str, out):
    overrides = {"train.val_every": 1, "data.n_val": 2, "data.carve_abnormal_from_test": True}
    if method == "condprompt" and "siglip" in model:  # 2 x 32 context vectors > 64 tokens
        overrides["method_args.n_ctx"] = 8
    if method == "winclip":  # one window scale keeps the quick test quick
        overrides["method_args.scales"] = [2]
    return anomed.train(
        root, method, k=2, epochs=1, image_size=112, model=model, output=out, overrides=overrides
    )


def _train_and_evaluate(root, model, method, out):
    art = _train(root, model, method, out)
    metrics = anomed.evaluate(art.output_dir)
    assert metrics["image_auroc"] is None or 0.0 <= metrics["image_auroc"] <= 1.0
    return art


@pytest.mark.parametrize(("model", "method"), QUICK)
def test_each_backbone_trains_evaluates_and_reloads_to_the_same_scores(
    model, method, phantom_root, tmp_path
):
    art = _train_and_evaluate(phantom_root, model, method, tmp_path / "run")
    images = [np.random.default_rng(0).random((112, 112, 3)).astype(np.float32)]
    batch = torch.from_numpy(np.stack(images).transpose(0, 3, 1, 2))
    with torch.no_grad():
        direct = art.method.eval()(batch).image_score
    loaded = anomed.load(art.output_dir, device="cpu").predict(images)
    assert loaded[0].status == "ok"
    assert loaded[0].score == pytest.approx(float(direct[0]), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "method"), MATRIX)
def test_every_method_runs_on_every_backbone(model, method, phantom_root, tmp_path):
    _train_and_evaluate(phantom_root, model, method, tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "method"),
    [(b, "condprompt") for b in BACKBONES] + [(b, "winclip") for b in BACKBONES],
)
def test_onnx_export_works_on_the_new_towers(model, method, phantom_root, tmp_path):
    """condprompt runs the text tower inside the graph (BERT's inputs_embeds included)."""
    art = _train(phantom_root, model, method, tmp_path / "run")
    report = export_run(art.output_dir, tmp_path / "model.onnx")
    assert report.check.max_score_diff < 1e-3


@pytest.mark.parametrize("method", [m for m in METHODS if METHODS.get(m).needs_text])
def test_text_methods_refuse_an_image_only_tower_before_reading_data(method, tmp_path):
    missing = tmp_path / "no-such-data"  # never read: the refusal comes first
    with pytest.raises(AnomedError, match=re.escape(f"{method} cannot run on {IMAGE_ONLY}")) as err:
        anomed.train(missing, method, model=IMAGE_ONLY, output=tmp_path / "run")
    assert "\n" not in str(err.value)


def test_sigmoid_scoring_needs_a_sigmoid_trained_backbone(tiny_backbone):
    from anomed.methods import create_method

    with pytest.raises(AnomedError, match="text_scoring: sigmoid needs"):
        create_method("winclip", tiny_backbone, {"text_scoring": "sigmoid"})
    assert create_method("winclip", tiny_backbone).scoring == "softmax"
