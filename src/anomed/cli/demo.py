"""`anomed demo`: phantoms -> train MediCLIP on the tiny backbone -> evaluate."""

from __future__ import annotations

import argparse
from pathlib import Path


def cmd_demo(args: argparse.Namespace) -> None:
    from anomed.engine.demo import run_demo

    run_demo(Path(args.output), epochs=args.epochs, progress=not args.quiet)


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add demo."""
    p = sub.add_parser("demo", help="phantoms -> train MediCLIP (tiny backbone) -> evaluate")
    p.add_argument("--output", "-o", default="runs/demo")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.set_defaults(func=cmd_demo)
