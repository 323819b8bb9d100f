"""`anomed pacs watch / send / status`: score series from a PACS over DICOMweb and store the
results (SEG, Parametric Map, SR) back; the ledger as a table (anomed.pacs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomed.cli.options import subparsers

SEND = ["seg", "pmap", "sr"]
STATES = ["found", "retrieved", "scored", "sent", "failed"]


def cmd_pacs(args: argparse.Namespace) -> int:
    from anomed.pacs.run import open_watcher, status_table, summary_line, watch
    from anomed.pacs.worker import WatchConfig

    if args.pacs_command == "status":
        print(status_table(args.data_dir, args.state))
        return 0
    cfg = WatchConfig(
        data_dir=Path(args.data_dir), send=tuple(args.send), max_attempts=args.max_attempts,
        poll_s=getattr(args, "poll_s", 10.0), since=getattr(args, "since", None),
        modalities=tuple(getattr(args, "modality", None) or ()),
        body_parts=tuple(getattr(args, "body_part", None) or ()),
        description=getattr(args, "description", None), stable_s=getattr(args, "stable_s", 2.0),
        once=args.pacs_command == "send" or args.once, review=args.review,
    )  # fmt: skip
    watcher = open_watcher(
        args.run, args.url, cfg, args.user, args.token, args.device, retries=args.retries
    )
    if args.pacs_command == "send":
        try:
            passes = [watcher.send_study(args.study)]
        finally:
            watcher.close()
    else:
        passes = watch(watcher)
    print(summary_line(passes, cfg.data_dir))
    down = passes[-1].unavailable if passes else None
    return 1 if down or any(p.failed for p in passes) else 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="checkpoint folder")
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. http://host:8042/dicom-web")
    p.add_argument("--send", nargs="+", default=SEND, choices=SEND, help="objects to store")
    p.add_argument("--data-dir", default="runs/pacs", help="ledger and work files")
    p.add_argument("--user", help="basic auth USER:PASSWORD (or ANOMED_PACS_USER)")
    p.add_argument("--token", help="bearer token (or ANOMED_PACS_TOKEN)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--max-attempts", type=int, default=3, help="tries before 'failed'")
    p.add_argument("--retries", type=int, default=6, help="tries per request (backoff)")
    p.add_argument(
        "--review", action="store_true", help="list results on anomed serve --data-dir too"
    )
    p.set_defaults(func=cmd_pacs)


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add pacs watch, pacs send, pacs status."""
    pacs = sub.add_parser("pacs", help="score series from a PACS over DICOMweb, send results back")
    group = subparsers(pacs, "pacs_command", "{watch,send,status}")
    p = group.add_parser("watch", help="find new series, score them, store SEG / PM / SR back")
    _common(p)
    p.add_argument("--poll-s", type=float, default=10.0, help="seconds between passes")
    p.add_argument("--since", help="only studies dated YYYYMMDD or later")
    p.add_argument("--modality", nargs="+", help="e.g. MR CT CR DX (default: all images)")
    p.add_argument("--body-part", nargs="+", help="BodyPartExamined values to keep")
    p.add_argument("--description", help="keep series whose description contains this")
    p.add_argument("--stable-s", type=float, default=2.0, help="wait for a series to settle")
    p.add_argument("--once", action="store_true", help="one pass, then exit")
    p = group.add_parser("send", help="score one study now and store its results")
    _common(p)
    p.add_argument("--study", required=True, help="StudyInstanceUID")
    p = group.add_parser("status", help="the ledger as a table")
    p.add_argument("--data-dir", default="runs/pacs", help="the watch's --data-dir")
    p.add_argument("--state", choices=STATES)
    p.set_defaults(func=cmd_pacs)
