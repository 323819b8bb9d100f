"""k-shot sampling: determinism, disjoint splits, errors, and the shot-list file."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomed.data.layouts import load_dataset
from anomed.data.sample import ABNORMAL, NORMAL, Sample
from anomed.data.shots import ShotSplit, read_shot_list, sample_shots, write_shot_list
from anomed.errors import AnomedError


def _pool(n_normal: int, n_abnormal: int = 0) -> list[Sample]:
    normals = [Sample(Path(f"/d/train/normal/{i:02d}.png"), NORMAL) for i in range(n_normal)]
    abnormals = [
        Sample(Path(f"/d/train/abnormal/{i:02d}.png"), ABNORMAL) for i in range(n_abnormal)
    ]
    return normals + abnormals


def _images(split: ShotSplit) -> tuple[list[Path], list[Path]]:
    return [s.image for s in split.shots], [s.image for s in split.val]


def test_same_seed_gives_same_split_whatever_the_pool_order() -> None:
    pool = _pool(20)
    shuffled = pool[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != pool
    assert sample_shots(pool, 4, seed=7) == sample_shots(shuffled, 4, seed=7)
    assert _images(sample_shots(pool, 4, seed=7)) != _images(sample_shots(pool, 4, seed=8))


def test_shots_and_val_are_disjoint_normals_from_the_pool() -> None:
    pool = _pool(20)
    split = sample_shots(pool, 4, seed=0, n_val=8)
    shots, val = _images(split)
    assert (len(shots), len(val), split.k, split.seed) == (4, 8, 4, 0)
    assert len(set(shots) | set(val)) == 12  # no repeats, no overlap
    assert set(shots) | set(val) <= {s.image for s in pool}


def test_val_takes_what_is_left_when_the_pool_is_small() -> None:
    split = sample_shots(_pool(6), 4, seed=0, n_val=8)
    assert len(split.val) == 2
    assert sample_shots(_pool(4), 4, seed=0).val == []


def test_smaller_k_shots_are_a_prefix_of_larger_k() -> None:
    pool = _pool(30)
    assert sample_shots(pool, 4, seed=1).shots == sample_shots(pool, 8, seed=1).shots[:4]


def test_duplicate_pool_entries_are_drawn_once() -> None:
    split = sample_shots(_pool(5) * 2, 5, seed=0)
    assert len(set(_images(split)[0])) == 5 and split.val == []


def test_k_larger_than_pool_says_how_many_there_are() -> None:
    with pytest.raises(AnomedError, match=r"has 3 normal images but k=4.*k <= 3"):
        sample_shots(_pool(3, 10), 4, seed=0)
    with pytest.raises(AnomedError, match=r"has 1 abnormal images but k_abnormal=2"):
        sample_shots(_pool(10, 1), 4, seed=0, k_abnormal=2)


def test_abnormal_shots_and_validation() -> None:
    split = sample_shots(_pool(20, 12), 4, seed=2, n_val=8, k_abnormal=2)
    assert [s.label for s in split.shots] == [NORMAL] * 4 + [ABNORMAL] * 2
    assert [s.label for s in split.val] == [NORMAL] * 8 + [ABNORMAL] * 8
    shots, val = _images(split)
    assert not set(shots) & set(val)
    few = sample_shots(_pool(20, 3), 4, seed=2, n_val=8, k_abnormal=2)
    assert [s.label for s in few.val].count(ABNORMAL) == 1


def _dataset(root: Path) -> Path:
    def png(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)

    for i in range(12):
        png(root / "train" / "normal" / f"n{i}.png")
    for i in range(3):
        png(root / "train" / "abnormal" / f"a{i}.png")
        png(root / "train" / "masks" / f"a{i}_mask.png")
        png(root / "test" / "abnormal" / f"n{i}.png")  # same file names as training images
    png(root / "train" / "masks" / "a0_mask_1.png")
    png(root / "test" / "normal" / "n0.png")
    return root


def test_shots_and_val_never_come_from_the_test_set(tmp_path: Path) -> None:
    data = load_dataset(_dataset(tmp_path / "d"))
    split = sample_shots(data.train, 4, seed=0, n_val=8, k_abnormal=1)
    used = {s.image for s in split.shots + split.val}
    assert used <= {s.image for s in data.train}
    assert not used & {s.image for s in data.test}


def test_shot_list_round_trip_is_exact(tmp_path: Path) -> None:
    data = load_dataset(_dataset(tmp_path / "d"))
    split = sample_shots(data.train, 4, seed=5, n_val=3, k_abnormal=3)
    path = write_shot_list(tmp_path / "run" / "shots.yaml", split, data.root)
    text = path.read_text()
    assert "k: 4" in text and "seed: 5" in text
    assert "train/masks/a0_mask_1.png" in text and str(data.root) not in text  # relative paths
    assert read_shot_list(path, data.root) == split


def test_shot_list_can_be_moved_with_the_dataset(tmp_path: Path) -> None:
    data = load_dataset(_dataset(tmp_path / "d"))
    split = sample_shots(data.train, 2, seed=0)
    path = write_shot_list(tmp_path / "shots.yaml", split, data.root)
    (tmp_path / "d").rename(tmp_path / "moved")
    again = read_shot_list(path, tmp_path / "moved")
    assert [s.image.name for s in again.shots] == [s.image.name for s in split.shots]
    assert all(s.image.is_file() for s in again.shots + again.val)


def test_shot_list_errors(tmp_path: Path) -> None:
    data = load_dataset(_dataset(tmp_path / "d"))
    path = write_shot_list(tmp_path / "shots.yaml", sample_shots(data.train, 2, seed=0), data.root)
    with pytest.raises(AnomedError, match=r"shots\.yaml: lists train/normal/.*not found under"):
        read_shot_list(path, tmp_path)
    with pytest.raises(AnomedError, match=r"missing\.yaml: no such shot list"):
        read_shot_list(tmp_path / "missing.yaml", data.root)
    path.write_text("k: 2\nshots: []\n")
    with pytest.raises(AnomedError, match=r"needs the keys k, seed, shots and val"):
        read_shot_list(path, data.root)
