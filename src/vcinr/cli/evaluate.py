"""The ``eval`` subcommand: RD curves of a model against the standard codecs of its modality."""

from __future__ import annotations

import argparse
from pathlib import Path

from vcinr.cli.codec import effort_steps


def _cmd_eval(args: argparse.Namespace) -> None:
    from vcinr.bundled import resolve_model
    from vcinr.evaluate.harness import format_table, run_eval

    outcome = run_eval(resolve_model(args.model), args.inputs, args.out, codecs=args.codecs, anchor=args.anchor,
                       qualities=args.quality, max_files=args.max_files, reference=args.reference,
                       ms_ssim=args.ms_ssim, progress=not args.quiet, effort=args.effort)
    print(format_table(outcome))
    print(f"wrote {outcome.json_path} and {outcome.plot_path}")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``eval`` on ``vcinr``'s subparsers."""
    p = subparsers.add_parser(
        "eval", help="RD curves of a model against standard codecs on the same files",
        description="Compress every input with every quality level of the model and with the "
                    "modality's standard codecs; write rd.json (all points, BD-rates) and rd.png.")
    p.add_argument("inputs", nargs="+", type=Path,
                   help="files or directories (an .npz of CIFAR-style 'images' or of sphere fields is unpacked)")
    p.add_argument("--model", required=True,
                   help="model directory with fitted codecs, or a bundled model's name (see 'vcinr models')")
    p.add_argument("--out", required=True, type=Path, help="folder for rd.json and rd.png")
    p.add_argument("--codecs", nargs="*", help="standard codecs (default: all of the modality; none given: the model alone)")
    p.add_argument("--anchor", help="codec the BD-rates are measured against (default: JPEG / MP3 / H.264)")
    p.add_argument("--quality", nargs="*", help="quality levels of the model (default: all)")
    p.add_argument("--max-files", type=int, help="use at most this many files")
    p.add_argument("--reference", help="also draw the paper's published curve for this dataset (e.g. cifar10)")
    p.add_argument("--ms-ssim", action="store_true", help="also compute MS-SSIM of image codecs (slow on CPU)")
    p.add_argument("--effort", type=effort_steps, metavar="STEPS",
                   help="encoder effort of vcinr's learned levels, as for 'vcinr compress' (default: compress's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)
