"""`anomed crossseq`: one checkpoint on every sequence x view of test volumes."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_crossseq(args: argparse.Namespace) -> None:
    from anomed.engine.volumes import cross_protocol

    cross_protocol(
        args.checkpoint, args.volumes, args.output, tuple(args.sequences), tuple(args.views)
    )


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add crossseq."""
    p = sub.add_parser(
        "crossseq",
        help="cross-sequence / cross-view protocol: evaluate a "
        "checkpoint on every sequence x view of the test volumes",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--volumes", required=True, help="cases folder (cases.json)")
    p.add_argument("--output", "-o", default="runs/crossseq")
    p.add_argument("--sequences", nargs="+", default=["t1", "t1ce", "t2", "flair"])
    p.add_argument("--views", nargs="+", default=["axial", "sagittal", "coronal"])
    p.set_defaults(func=cmd_crossseq)
