"""The ``vcinr`` command.

Every subcommand has ``--help``; bad input ends in one line on stderr and exit code 2
(errors derived from :class:`vcinr.errors.VcinrError`), never in a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from vcinr import __version__
from vcinr.codec.commands import add_commands as add_codec_commands, effort_steps
from vcinr.scenes.commands import add_commands as add_scene_commands
from vcinr.errors import VcinrError

EXIT_USAGE = 2


def _cmd_train(args: argparse.Namespace) -> None:
    from vcinr.config import load_config
    from vcinr.meta.training import CHECKPOINT_FILE, divergence_warning, train
    from vcinr.storage import state_step

    overrides = {}
    if args.data is not None:
        overrides["data.path"] = str(args.data)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.device is not None:
        overrides["train.device"] = args.device
    if args.time_budget is not None:
        overrides["train.time_budget"] = args.time_budget
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise VcinrError(f"--set expects KEY=VALUE, got {item!r}")
        import yaml

        overrides[key] = yaml.safe_load(value)
    config = load_config(args.config, overrides)
    resume_step = state_step(args.out / CHECKPOINT_FILE)
    if resume_step is not None and os.environ.get("RANK", "0") == "0":
        print(f"resuming from step {resume_step} ({args.out})")
    result = train(config, args.out, progress=not args.quiet)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun every rank trains; rank 0 reports
    metric = "psnr" if "psnr" in result.final else "accuracy"
    unit = " dB" if metric == "psnr" else ""
    print(f"trained {result.steps} steps in {result.seconds:.0f} s -> {args.out}")
    print(f"test {metric} after {config.meta.inner_steps} inner steps: "
          f"{result.initial[metric]:.2f}{unit} (untrained) -> {result.final[metric]:.2f}{unit} (meta-learned)")
    warning = divergence_warning(args.out, result.final)
    if warning:
        print(f"vcinr train: warning: {warning}", file=sys.stderr)


def _cmd_eval(args: argparse.Namespace) -> None:
    from vcinr.bundled import resolve_model
    from vcinr.evaluate.harness import format_table, run_eval

    outcome = run_eval(resolve_model(args.model), args.inputs, args.out, codecs=args.codecs, anchor=args.anchor,
                       qualities=args.quality, max_files=args.max_files, reference=args.reference,
                       ms_ssim=args.ms_ssim, progress=not args.quiet, effort=args.effort)
    print(format_table(outcome))
    print(f"wrote {outcome.json_path} and {outcome.plot_path}")


def _cmd_presets(args: argparse.Namespace) -> None:
    from vcinr.config import preset_names

    for name in preset_names():
        print(name)


def _cmd_models(args: argparse.Namespace) -> None:
    from vcinr.bundled import bundled_models, format_models

    print(format_models(bundled_models()))


def _cmd_demo(args: argparse.Namespace) -> None:
    from vcinr.demo import run_demo, run_train_demo

    if args.train:
        run_train_demo(args.out, quick=args.quick)
    else:
        run_demo(args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcinr",
        description="Modality-agnostic compression with meta-learned implicit neural representations (VC-INR).",
    )
    parser.add_argument("--version", action="version", version=f"vcinr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="meta-learn a conditioned SIREN on a dataset",
                       description="Meta-learn θ, φ0 and Meta-SGD step sizes (Algorithm 1). "
                                   "Re-running with the same --out resumes.")
    p.add_argument("--config", required=True, help="preset name (see 'vcinr presets') or YAML file")
    p.add_argument("--out", required=True, type=Path, help="model directory to create or resume")
    p.add_argument("--data", type=Path, help="dataset path, overriding data.path of the config")
    p.add_argument("--steps", type=int, help="outer steps, overriding train.steps")
    p.add_argument("--device", help="cpu or cuda[:N], overriding train.device")
    p.add_argument("--time-budget", type=float, help="stop after this many seconds of training")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config value, e.g. --set model.latent_dim=128 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    add_codec_commands(sub)
    add_scene_commands(sub)

    p = sub.add_parser("eval", help="RD curves of a model against standard codecs on the same files",
                       description="Compress every input with every quality level of the model and with the "
                                   "modality's standard codecs; write rd.json (all points, BD-rates) and rd.png.")
    p.add_argument("inputs", nargs="+", type=Path,
                   help="files or directories (an .npz of CIFAR-style 'images' or of sphere fields is unpacked)")
    p.add_argument("--model", required=True,
                   help="model directory with fitted codecs, or a bundled model's name (see 'vcinr models')")
    p.add_argument("--out", required=True, type=Path, help="folder for rd.json and rd.png")
    p.add_argument("--codecs", nargs="*", help="standard codecs (default: all of the modality)")
    p.add_argument("--anchor", help="codec the BD-rates are measured against (default: JPEG / MP3 / H.264)")
    p.add_argument("--quality", nargs="*", help="quality levels of the model (default: all)")
    p.add_argument("--max-files", type=int, help="use at most this many files")
    p.add_argument("--reference", help="also draw the paper's published curve for this dataset (e.g. cifar10)")
    p.add_argument("--ms-ssim", action="store_true", help="also compute MS-SSIM of image codecs (slow on CPU)")
    p.add_argument("--effort", type=effort_steps, metavar="STEPS",
                   help="encoder effort of vcinr's learned levels, as for 'vcinr compress' (default: compress's)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("presets", help="list the bundled config presets")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser("models", help="list the bundled pretrained models",
                       description="The pretrained models shipped with vcinr (docs/models.md): name, modality, "
                                   "item (patch) shape, size on disk and quality levels.")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("demo", help="the quick start: run vcinr on bundled sample data",
                       description="Compress and decompress a bundled image, audio clip and ERA5 grid (none seen "
                                   "in training) with the bundled models at two quality levels, check the round "
                                   "trip, compare with JPEG/WebP and MP3, and write a report folder.")
    p.add_argument("--out", type=Path, default=Path("demo-report"), help="report folder (default: ./demo-report)")
    p.add_argument("--train", action="store_true",
                   help="instead meta-train a tiny VC-INR on bundled CIFAR-10 samples (model in OUT/model)")
    p.add_argument("--quick", action="store_true", help="with --train: a much shorter run, for smoke tests")
    p.set_defaults(func=_cmd_demo)
    return parser


def _printable(message: str) -> str:
    """Escape control characters (from file names or hostile files): the error stays one harmless line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _end_progress_bars() -> None:
    """Close the progress bars an interrupted command left open, so the next message starts its own line.

    The bars still live in the frames of the traceback, so nothing else closes them before
    the message is printed.
    """
    tqdm = sys.modules.get("tqdm")
    if tqdm is not None:
        for bar in list(getattr(tqdm.tqdm, "_instances", ())):
            bar.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # python -W / PYTHONWARNINGS still shows them, for debugging
                warnings.simplefilter("ignore")  # a library's warning would be extra lines on stderr
            func(args)
    except VcinrError as exc:
        print(f"vcinr {args.command}: error: {_printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        _end_progress_bars()
        print(f"vcinr {args.command}: interrupted" + (f": {exc}" if str(exc) else ""), file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permission denied, ...: the user's environment, not a bug
        message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")  # file names may hold control characters
        print(f"vcinr {args.command}: error: {_printable(message)}", file=sys.stderr)
        return EXIT_USAGE
    except (MemoryError, RuntimeError) as exc:  # torch reports a failed CPU allocation as RuntimeError
        if not (isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "out of memory" in str(exc)):
            raise
        print(f"vcinr {args.command}: error: out of memory (a config or input too large for this machine)",
              file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
