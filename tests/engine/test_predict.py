"""predict_run (anomed.engine.predict) without a model: a stand-in detector scores the rows."""

from __future__ import annotations

import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from anomed.engine import predict
from anomed.engine.detector import Prediction


class _Interrupted:
    """Scores the first batch, then the user presses Ctrl-C."""

    threshold, batch_size, run_dir, map_range = 0.5, 1, None, (0.0, 1.0)
    info = SimpleNamespace(run=SimpleNamespace(method="toy", preset="anomed"))

    def __init__(self) -> None:
        self.calls = 0

    def predict(self, paths, keep_images=False):
        self.calls += 1
        if self.calls > 1:
            raise KeyboardInterrupt
        image = np.zeros((8, 8, 3), np.float32)
        amap = np.zeros((8, 8), np.float32)
        return [Prediction(str(p), score=0.1, decision="normal", threshold=0.5,
                           anomaly_map=amap, image=image) for p in paths]  # fmt: skip


def test_an_interrupted_predict_marks_its_summary_incomplete(tmp_path, monkeypatch):
    """predictions.json of a run cut short used to read like a finished one (n_inputs = the
    rows so far, nothing said it stopped)."""
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), np.zeros((8, 8), np.uint8))
    monkeypatch.setattr(predict, "_load", lambda *a: _Interrupted())
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        predict.predict_run("ckpt", [tmp_path / f"{n}.png" for n in "abc"], out, progress=False)
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["n_inputs"] == 1 and summary["complete"] is False
    predict.predict_run(  # one input: one batch, done before the (fresh) stand-in stops
        "ckpt", [tmp_path / "a.png"], out, progress=False, overwrite=True
    )
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["n_inputs"] == 1 and summary["complete"] is True


def test_read_predictions_drops_a_torn_last_row_but_not_a_torn_middle_one(tmp_path):
    """A run killed mid-write leaves half a JSON line at the end; reading it used to raise."""
    good = json.dumps({"file": "a.png", "status": "ok"})
    (tmp_path / "predictions.jsonl").write_text(f'{good}\n{{"file": "b.p', encoding="utf-8")
    assert predict.read_predictions(tmp_path) == [{"file": "a.png", "status": "ok"}]
    (tmp_path / "predictions.jsonl").write_text(f'{{"fi\n{good}\n', encoding="utf-8")
    with pytest.raises(predict.AnomedError, match="line 1 is not JSON"):
        predict.read_predictions(tmp_path)
