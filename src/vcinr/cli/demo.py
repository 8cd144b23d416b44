"""The ``models`` and ``demo`` subcommands: the pretrained models shipped with vcinr, and the quick start."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_models(args: argparse.Namespace) -> None:
    from vcinr.bundled import bundled_models, format_models

    print(format_models(bundled_models()))


def _cmd_demo(args: argparse.Namespace) -> None:
    from vcinr.demo import run_demo, run_train_demo

    if args.train:
        from vcinr.backend import keep_freed_memory

        keep_freed_memory()  # as ``vcinr train`` does: a command's process setting (docs/performance.md)
        run_train_demo(args.out, quick=args.quick)
    else:
        run_demo(args.out)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``models`` and ``demo`` on ``vcinr``'s subparsers."""
    p = subparsers.add_parser(
        "models", help="list the bundled pretrained models",
        description="The pretrained models shipped with vcinr (docs/models.md): name, modality, "
                    "item (patch) shape, size on disk and quality levels.")
    p.set_defaults(func=_cmd_models)

    p = subparsers.add_parser(
        "demo", help="the quick start: run vcinr on bundled sample data",
        description="Compress and decompress a bundled image, audio clip and ERA5 grid (none seen "
                    "in training) with the bundled models at two quality levels, check the round "
                    "trip, compare with JPEG/WebP and MP3, and write a report folder.")
    p.add_argument("--out", type=Path, default=Path("demo-report"), help="report folder (default: ./demo-report)")
    p.add_argument("--train", action="store_true",
                   help="instead meta-train a tiny VC-INR on bundled CIFAR-10 samples (model in OUT/model)")
    p.add_argument("--quick", action="store_true", help="with --train: a much shorter run, for smoke tests")
    p.set_defaults(func=_cmd_demo)
