"""Options shared by several commands, the subparser helper and the warning display.

Each shared flag is defined here once; a command module adds them with add_*_options(p).
"""

from __future__ import annotations

import argparse
import sys

from anomed.errors import AnomedError


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The run-config flags of train and zeroshot (each maps to a config key in _FLAG_KEYS)."""
    p.add_argument("--config", help="YAML run config (flags and --set override it)")
    p.add_argument("--method", help="method name (see `anomed methods`), default mediclip")
    p.add_argument(
        "--preset",
        choices=["anomed", "reference", "paper"],
        help="whose computation to follow where they differ: anomed (default), the reference "
        "code, or the paper (see FIDELITY.md)",
    )
    p.add_argument("--data", help="dataset root (any layout: see --layout)")
    p.add_argument(
        "--layout",
        help="dataset layout: auto (default: detected), folder, samples-json, bmad, data-json",
    )
    p.add_argument("--class-name", help="organ/class word for the prompts (default: the dataset's)")
    p.add_argument("--k", type=int, help="normal shots (default 16)")
    p.add_argument("--k-abnormal", type=int, help="labelled abnormal shots (supervised methods)")
    p.add_argument("--seed", type=int, help="seeds the shot draw and training (default 0)")
    p.add_argument("--shots-file", help="reuse the shot list of an earlier run (shots.yaml)")
    p.add_argument(
        "--abnormal-from-test",
        action="store_true",
        default=None,
        help="supervised methods on normal-only pools: move seeded abnormal test "
        "images into the pool for shots and validation (they leave the test set)",
    )
    p.add_argument("--model", help="open_clip model name, hf-hub:org/repo or local-dir:/path")
    p.add_argument("--pretrained", help="open_clip tag (e.g. openai) or a local checkpoint file")
    p.add_argument("--image-size", type=int, help="input size; positional embeddings interpolated")
    p.add_argument("--preprocess", help="pixel normalisation preset: clip, paper, cxr")
    p.add_argument("--epochs", type=int, help="training epochs (default: the method's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the method's)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--select",
        choices=["val", "last", "test-leak"],
        help="model selection: validation split (default), last epoch, or the "
        "papers' habit of picking the epoch on the test set (leaks test labels)",
    )
    p.add_argument(
        "--no-feature-cache",
        dest="cache_features",
        action="store_false",
        default=None,
        help="side-adapter methods: run the backbone on freshly synthesized anomalies every "
        "epoch instead of caching frozen features once (slower; see train.cache_variants)",
    )
    p.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile the frozen blocks"
    )
    p.add_argument(
        "--output", "-o", help="run folder (default runs/<method>-<dataset>-k<k>-s<seed>)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing, non-empty run folder"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set method_args.temperature=0.07",
    )


_FLAG_KEYS = {
    "method": "method",
    "preset": "preset",
    "class_name": "data.class_name",
    "data": "data.root",
    "layout": "data.layout",
    "k": "data.k",
    "k_abnormal": "data.k_abnormal",
    "shots_file": "data.shots_file",
    "abnormal_from_test": "data.carve_abnormal_from_test",
    "train_data": "data.train_roots",
    "model": "backbone.model",
    "pretrained": "backbone.pretrained",
    "image_size": "backbone.image_size",
    "preprocess": "backbone.preprocess",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "device": "train.device",
    "select": "train.select",
    "cache_features": "train.cache_features",
    "compile": "train.compile",
    "output": "output_dir",
}


def build_run_config(args: argparse.Namespace):
    """Config file, then flags, then --set overrides -> a checked RunConfig (every field and
    method option validated before any data are read)."""
    from anomed.config import RunConfig, apply_overrides, from_dict, load_yaml, set_dotted

    if getattr(args, "output", None) == "":
        raise AnomedError("--output '': an empty path. Fix: name a folder, or leave -o out.")
    data = load_yaml(args.config) if args.config else {}
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            set_dotted(data, key, value)
    if args.seed is not None:
        set_dotted(data, "data.seed", args.seed)
        set_dotted(data, "train.seed", args.seed)
    cfg = from_dict(RunConfig, apply_overrides(data, args.set))
    from anomed.engine.run import validate_run_config

    return validate_run_config(cfg)


def add_ray_options(p: argparse.ArgumentParser) -> None:
    """The engine switch of predict and the flags of its Ray engine."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default); ray: a Ray cluster, Parquet shards, resumable",
    )
    p.add_argument("--address", help="ray: auto (the cluster on this machine) or ray://HEAD:10001")
    p.add_argument("--workers", type=int, help="ray: model actors (default: one per GPU)")
    p.add_argument("--gpus-per-worker", type=float, help="ray: GPUs per actor (0: CPU actors)")
    p.add_argument("--path-column", help="ray: path column of CSV/Parquet manifests (path)")
    p.add_argument(
        "--maps",
        action="store_true",
        help="ray: write overlay PNGs and anomaly NIfTI maps too (the local engine always does)",
    )
    p.add_argument(
        "--retry-errors", action="store_true", help="ray: on resume, score error rows again"
    )


def add_tracking_option(p: argparse.ArgumentParser) -> None:
    """--tracking URI (train, eval, bench run): log to MLflow (anomed.tracking)."""
    p.add_argument(
        "--tracking",
        metavar="URI",
        help="log to MLflow (needs [tracking]): sqlite:///runs/mlflow.db, file:./mlruns, or a "
        "server's http:// address",
    )


def add_quiet_option(p: argparse.ArgumentParser, default: object = False) -> None:
    """`--quiet/-q`, defined once: on the top-level parser and (via _quiet_parent) on every
    subcommand."""
    p.add_argument("--quiet", "-q", action="store_true", default=default, help="no progress bars")


def _quiet_parent() -> argparse.ArgumentParser:
    """`-q` accepted after any subcommand too (SUPPRESS keeps the top-level value otherwise)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_quiet_option(parent, default=argparse.SUPPRESS)
    return parent


def subparsers(parser: argparse.ArgumentParser, dest: str, metavar: str):
    """A subparser group whose parsers all accept -q."""
    group = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
    add = group.add_parser

    def add_parser(name: str, **kwargs):
        return add(name, parents=[_quiet_parent()], **kwargs)

    group.add_parser = add_parser
    return group


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """A user-facing warning as one line (no source file and line of anomed's code)."""
    print(f"anomed: warning: {message}", file=file or sys.stderr)
