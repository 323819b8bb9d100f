"""`anomed methods`: list the registered methods."""

from __future__ import annotations

import argparse


def cmd_methods(args: argparse.Namespace) -> None:
    from anomed.methods import METHODS

    for name in METHODS.names():
        doc = (METHODS.get(name).__doc__ or "").strip()
        print(f"{name:12s} {doc.splitlines()[0] if doc else '(no description)'}")


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add methods."""
    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)
