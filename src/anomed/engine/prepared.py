"""PreparedRun: a checked run before any training.

It sits below both `engine.run` (which makes it) and `engine.reports` (which describes it), so
neither has to import the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anomed.config import RunConfig
from anomed.data.sample import DatasetSplits
from anomed.data.shots import ShotSplit


@dataclass
class PreparedRun:
    """A checked run before any training: its data, shots and (checked) output folder."""

    cfg: RunConfig
    splits: DatasetSplits
    split: ShotSplit
    output_dir: Path
    class_name: str
