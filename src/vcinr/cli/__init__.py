"""The ``vcinr`` command: every subcommand lives in this package, and nothing else in vcinr imports it.

Every subcommand has ``--help``; bad input ends in one line on stderr and exit code 2
(errors derived from :class:`vcinr.errors.VcinrError`), never in a traceback.  Each module
registers its subcommands (``add_commands``) and imports the work it calls only inside the
handler, so that ``vcinr --help`` does not pay for torch.  A subcommand's ``precheck`` (if it
sets one) runs before torch is imported, so that what it checks is answered at once.
"""

from __future__ import annotations

import argparse
import gc
import sys
import warnings
from collections.abc import Callable, Sequence

from vcinr import __version__
from vcinr.cli import codec, demo, evaluate, scenes
from vcinr.cli.train import add_presets_command, add_train_commands
from vcinr.errors import VcinrError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vcinr",
        description="Modality-agnostic compression with meta-learned implicit neural representations (VC-INR).",
    )
    parser.add_argument("--version", action="version", version=f"vcinr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_train_commands(sub)
    codec.add_commands(sub)
    scenes.add_commands(sub)
    evaluate.add_commands(sub)
    add_presets_command(sub)
    demo.add_commands(sub)
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


def import_torch() -> None:
    """Import torch, which every subcommand's work needs, with the garbage collector paused.

    The import makes a few hundred thousand long-lived objects, and a running collector walks
    them again and again while they are made: ~390 collections, 0.25 CPU s, a fifth of
    ``compress``'s start-up (docs/performance.md, "Start-up").  ``gc.freeze`` then moves them
    to the permanent generation, so that later full collections skip them too.  Only the
    process's first import does this (tests call :func:`main` many times in one process).
    """
    if "torch" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    func: Callable[[argparse.Namespace], None] = args.func
    precheck: Callable[[argparse.Namespace], None] | None = getattr(args, "precheck", None)
    try:
        with warnings.catch_warnings():
            if not sys.warnoptions:  # python -W / PYTHONWARNINGS still shows them, for debugging
                warnings.simplefilter("ignore")  # a library's warning would be extra lines on stderr
            if precheck is not None:
                precheck(args)
            import_torch()
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
