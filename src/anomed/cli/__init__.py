"""The `anomed` command: parse, call the library, print. No logic of its own.

One module per command group. Each has `register(sub)`, which adds its parsers to the
`COMMAND` subparser group and sets each one's handler (`p.set_defaults(func=cmd_...)`);
the handlers import the library lazily so `anomed --help` stays fast. Shared flags live in
`options.py`. To add a group: write `cli/<group>.py` with `register(sub)` and add the module
to `GROUPS` below (its place there is its place in `anomed --help`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from anomed.cli import bench, crossseq, data, demo, methods, pacs, predict, serve, train
from anomed.cli.logs import configure_logging
from anomed.cli.options import add_quiet_option, build_run_config, show_warning, subparsers
from anomed.errors import AnomedError, display_text

__all__ = ["GROUPS", "build_parser", "build_run_config", "main"]

GROUPS = (train, predict, bench, data, crossseq, demo, serve, pacs, methods)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomed", description="Few-/zero-shot medical image anomaly detection with CLIP."
    )
    add_quiet_option(parser)
    sub = subparsers(parser, "command", "COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name never crashes a print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    configure_logging()  # one line per record: no third-party traceback (cli/logs.py)
    warnings.simplefilter("default", UserWarning)
    warnings.showwarning = show_warning
    try:
        code = args.func(args)
    except AnomedError as exc:
        print(f"anomed: error: {display_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anomed: interrupted", file=sys.stderr)
        return 130
    return code or 0
