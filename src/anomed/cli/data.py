"""`anomed data ...`: phantom datasets, importing raw datasets, slicing volumes."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomed.cli.options import subparsers


def cmd_phantom(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset

    cfg = PhantomConfig(
        n_train=args.n_train,
        n_test_normal=args.n_test_normal,
        n_test_abnormal=args.n_test_abnormal,
        image_size=args.size,
        seed=args.seed,
    )
    splits = write_phantom_dataset(args.output, cfg, overwrite=args.overwrite)
    print(
        f"wrote {len(splits.train)} training and {len(splits.test)} test phantoms to {args.output}"
    )


def cmd_phantom_bmad(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms

    cfg = BmadPhantomConfig(
        organs=tuple(args.organs),
        n_valid=(args.n_valid, args.n_valid),
        n_test=(args.n_test, args.n_test),
        size=args.size,
        seed=args.seed,
    )
    folders = write_bmad_phantoms(args.output, cfg, overwrite=args.overwrite)
    print(f"wrote {', '.join(f.name for f in folders)} (BMAD layout) to {args.output}")


def cmd_phantom_chest(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.chest import ChestPhantomConfig, write_chest_phantoms

    cfg = ChestPhantomConfig(
        n_train=args.n_train,
        n_test_normal=args.n_test_normal,
        n_test_abnormal=args.n_test_abnormal,
        size=args.size,
        seed=args.seed,
        layout=args.layout,
    )
    splits = write_chest_phantoms(args.output, cfg, overwrite=args.overwrite)
    print(
        f"wrote {len(splits.train)} training and {len(splits.test)} test chest films "
        f"({args.layout} layout) to {args.output}"
    )


def cmd_phantom_volumes(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.heads import VolumePhantomConfig, write_phantom_volumes

    cfg = VolumePhantomConfig(n_cases=args.n_cases, seed=args.seed, shape=tuple(args.shape))
    cases = write_phantom_volumes(args.output, cfg, overwrite=args.overwrite)
    n_abn = sum(c.label for c in cases)
    print(
        f"wrote {len(cases)} head phantoms ({n_abn} with lesions; T1, T1CE, T2, FLAIR NIfTI, "
        f"one T1 DICOM series) to {args.output}"
    )


def cmd_import(args: argparse.Namespace) -> None:
    from anomed.data.importers import import_dataset
    from anomed.data.layouts import load_dataset
    from anomed.engine.reports import dataset_summary

    summary = import_dataset(
        args.source,
        args.output,
        args.kind,
        train_fraction=args.train_fraction,
        seed=args.seed,
        normal=tuple(args.normal),
        overwrite=args.overwrite,
    )
    print(summary.line())
    print(dataset_summary(load_dataset(summary.output, "folder")))


def cmd_volume_slices(args: argparse.Namespace) -> None:
    from anomed.engine.volumes import export_slices

    out = export_slices(
        args.volumes, args.sequence, args.view, args.output, overwrite=args.overwrite
    )
    print(f"wrote {args.sequence} {args.view} slices (folder layout) to {out}")


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add `data` with its phantom, import and volume-slices tools."""
    p = sub.add_parser("data", help="dataset tools")
    data_sub = subparsers(p, "data_command", "TOOL")
    p = data_sub.add_parser("phantom", help="write the synthetic brain-slice phantom dataset")
    p.add_argument("--output", "-o", default="data/phantom", help="dataset folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=48, help="normal training pool size")
    p.add_argument("--n-test-normal", type=int, default=40)
    p.add_argument("--n-test-abnormal", type=int, default=40)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.set_defaults(func=cmd_phantom)

    p = data_sub.add_parser(
        "phantom-bmad", help="write multi-organ phantom datasets in the BMAD/MVFA layout"
    )
    p.add_argument("--output", "-o", default="data/bmad_phantoms", help="parent folder to create")
    p.add_argument(
        "--organs",
        nargs="+",
        default=["brain", "liver", "retina"],
        choices=["brain", "liver", "retina", "chest"],
    )
    p.add_argument("--n-valid", type=int, default=16, help="good and Ungood images in valid/")
    p.add_argument("--n-test", type=int, default=20, help="good and Ungood images in test/")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_phantom_bmad)

    p = data_sub.add_parser("phantom-chest", help="write chest-film phantoms (PPAD)")
    p.add_argument("--output", "-o", default="data/chest_phantoms")
    p.add_argument("--layout", choices=["folder", "data-json"], default="folder")
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-test-normal", type=int, default=40)
    p.add_argument("--n-test-abnormal", type=int, default=40)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_phantom_chest)

    p = data_sub.add_parser("phantom-volumes", help="write 3D head phantoms (4 MRI sequences)")
    p.add_argument("--output", "-o", default="data/head_phantoms")
    p.add_argument("--n-cases", type=int, default=8)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 48])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_phantom_volumes)

    p = data_sub.add_parser(
        "import",
        help="arrange a raw dataset (class folders, or yes/ and no/ folders) in the folder layout",
    )
    p.add_argument("source", type=Path, help="the raw dataset's top folder")
    p.add_argument(
        "--from",
        dest="kind",
        choices=["class-folders", "yes-no"],
        required=True,
        help="class-folders: normal/, benign/, ... (images beside *_mask files, or in images/ + "
        "mask(s)/); yes-no: yes/ (abnormal) and no/ (normal)",
    )
    p.add_argument("--output", "-o", required=True, help="dataset folder to create")
    p.add_argument("--train-fraction", type=float, default=0.5, help="normals in the pool")
    p.add_argument("--seed", type=int, default=0, help="seeds the train/test split of normals")
    p.add_argument(
        "--normal",
        nargs="+",
        default=[],
        help="class folders holding normal images (default: normal, healthy, no, good, negative)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import)

    p = data_sub.add_parser("volume-slices", help="slice volume cases into a 2D folder dataset")
    p.add_argument("--volumes", required=True, help="cases folder (cases.json)")
    p.add_argument("--sequence", default="t1", choices=["t1", "t1ce", "t2", "flair"])
    p.add_argument("--view", default="axial", choices=["axial", "sagittal", "coronal"])
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_volume_slices)
