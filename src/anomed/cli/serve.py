"""`anomed serve`: the REST service and review page."""

from __future__ import annotations

import argparse

from anomed.cli.options import add_domain_check


def cmd_serve(args: argparse.Namespace) -> None:
    from anomed.config import from_dict
    from anomed.serve import ServeConfig, run_server
    from anomed.serve.config import token_from_env

    keys = ["host", "port", "data_dir", "device", "max_upload_mb", "max_batch", "batch_wait_ms"]
    keys += ["domain_check", "runtime"]
    data = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    data.update(runs=[str(r) for r in args.runs], token=token_from_env(args.token))
    data["access_log"] = args.access_log
    try:
        run_server(from_dict(ServeConfig, data))
    except KeyboardInterrupt:
        print("anomed serve: stopped")


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add serve."""
    p = sub.add_parser(
        "serve", help="REST service and review page for trained detectors (needs [serve])"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="checkpoint folder, or NAME=FOLDER")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--token", help="require 'Authorization: Bearer T' on /api/ (or ANOMED_TOKEN)")
    p.add_argument("--data-dir", help="uploads, pictures and verdicts (default runs/serve)")
    p.add_argument("--device", help="auto (default: GPU when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--max-upload-mb", type=float, help="request size cap (default 512)")
    p.add_argument("--max-batch", type=int, help="images per forward pass (default 16)")
    p.add_argument(
        "--batch-wait-ms", type=float, help="wait for more images after the first (default 5)"
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    add_domain_check(p)
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx", "openvino"],
        help="torch (default), or serve each run's export (anomed export) under onnxruntime or "
        "OpenVINO",
    )
    p.set_defaults(func=cmd_serve)
