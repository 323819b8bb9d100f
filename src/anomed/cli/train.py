"""`anomed train`, `anomed zeroshot`, `anomed eval`: fit a detector and measure it."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomed.cli.options import add_run_options, add_tracking_option, build_run_config


def cmd_train(args: argparse.Namespace) -> None:
    from anomed.engine.run import train_run
    from anomed.tracking import open_tracking

    cfg = build_run_config(args)
    tracking = open_tracking(args.tracking)  # an unwritable store fails before training
    art = train_run(cfg, progress=not args.quiet, overwrite=args.overwrite)
    run_id = tracking.train(art.output_dir)
    cal = art.info.calibration
    threshold = (
        "no threshold: saved uncalibrated"
        if cal.threshold is None
        else f"threshold {cal.threshold:.4f} at FPR {cal.target_fpr}"
    )
    print(
        f"saved checkpoint to {art.output_dir} (best epoch {art.fit.best_epoch} by "
        f"{art.fit.selected_by}; {threshold})"
    )
    if args.eval:
        result, out = _eval(art.output_dir, None, None, args, overwrite=True)
        tracking.eval(out, art.output_dir, run_id)
        _print_eval(result, out)


def _eval(
    checkpoint: Path,
    data: str | None,
    output: str | None,
    args: argparse.Namespace,
    overwrite: bool = False,
):
    from anomed.engine.run import eval_run

    return eval_run(
        checkpoint,
        data,
        output,
        device=args.device or "auto",
        batch_size=getattr(args, "batch_size", None),
        progress=not args.quiet,
        overwrite=overwrite,
    )


def _print_eval(result, out: Path) -> None:
    print((out / "metrics.md").read_text().rstrip())
    print(f"reports in {out}: metrics.json, metrics.md, scores.csv, heatmaps.png, roc.png")


def cmd_eval(args: argparse.Namespace) -> None:
    from anomed.engine.run import eval_run
    from anomed.tracking import open_tracking

    tracking = open_tracking(args.tracking)  # an unwritable store fails before the eval
    result = eval_run(
        Path(args.checkpoint),
        args.data,
        args.output,
        device=args.device or "auto",
        batch_size=args.batch_size,
        progress=not args.quiet,
        overwrite=args.overwrite,
        class_name=args.class_name or "",
        num_workers=args.num_workers,
    )
    tracking.eval(result[1], Path(args.checkpoint))
    _print_eval(*result)


def cmd_zeroshot(args: argparse.Namespace) -> None:
    from anomed.engine.protocols import zero_shot_leave_one_out

    zero_shot_leave_one_out(build_run_config(args), args.data, progress=not args.quiet)


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add train, zeroshot and eval (in this order: the order of `anomed --help`)."""
    p = sub.add_parser("train", help="train a detector on k shots and save a checkpoint")
    add_run_options(p)
    p.add_argument(
        "--train-data",
        nargs="+",
        metavar="ROOT",
        help="zero-shot: train on these datasets instead of shots of --data, which is tested "
        "(its pool serves only validation)",
    )
    p.add_argument("--eval", action="store_true", help="evaluate on the test split afterwards")
    add_tracking_option(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "zeroshot",
        help="leave-one-dataset-out: train on the others, test on "
        "each dataset under --data (a folder of datasets)",
    )
    add_run_options(p)
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset's test split")
    p.add_argument("checkpoint", type=Path, help="folder written by `anomed train`")
    p.add_argument("--data", help="dataset root (default: the one it was trained on)")
    p.add_argument("--output", "-o", help="report folder (default CHECKPOINT/eval/DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier reports there")
    p.add_argument("--class-name", help="organ/class word for the prompts on --data")
    p.add_argument(
        "--num-workers",
        type=int,
        choices=range(0, 65),
        metavar="N",
        help="processes decoding test images beside the model (default: the run's)",
    )
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--batch-size", type=int)
    add_tracking_option(p)
    p.set_defaults(func=cmd_eval)
