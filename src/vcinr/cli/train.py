"""The ``train`` and ``presets`` subcommands: meta-learning a model from a config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from vcinr.errors import VcinrError


def _cmd_train(args: argparse.Namespace) -> None:
    from vcinr.backend import keep_freed_memory
    from vcinr.config import load_config, parse_yaml
    from vcinr.meta.run_directory import CHECKPOINT_FILE, divergence_warning
    from vcinr.storage import state_step
    from vcinr.training import train

    overrides = {}
    if args.data is not None:
        overrides["data.path"] = str(args.data)
    if args.steps is not None:
        overrides["train.steps"] = args.steps
    if args.device is not None:
        overrides["train.device"] = args.device
    if args.time_budget is not None:
        overrides["train.time_budget"] = args.time_budget
    if args.init is not None:
        overrides["train.init_from"] = str(args.init)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise VcinrError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key] = parse_yaml(value, f"--set {key}")
    config = load_config(args.config, overrides)
    resume_step = state_step(args.out / CHECKPOINT_FILE)
    if resume_step is not None and os.environ.get("RANK", "0") == "0":
        print(f"resuming from step {resume_step} ({args.out})")
    keep_freed_memory()  # a long-running command's process setting, never the library's (docs/performance.md)
    result = train(config, args.out, progress=not args.quiet,
                   compile_=os.environ.get("VCINR_COMPILE", "") not in ("", "0"))
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun every rank trains; rank 0 reports
    metric = "psnr" if "psnr" in result.final else "accuracy"
    unit = " dB" if metric == "psnr" else ""
    print(f"trained {result.steps} steps in {result.seconds:.0f} s -> {args.out}")
    start = f"from {config.train.init_from}" if config.train.init_from else "untrained"
    print(f"test {metric} after {config.meta.inner_steps} inner steps: "
          f"{result.initial[metric]:.2f}{unit} ({start}) -> {result.final[metric]:.2f}{unit} (meta-learned)")
    warning = divergence_warning(args.out, result.final)
    if warning:
        print(f"vcinr train: warning: {warning}", file=sys.stderr)


def _cmd_presets(args: argparse.Namespace) -> None:
    from vcinr.config import preset_names

    for name in preset_names():
        print(name)


def add_train_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` on ``vcinr``'s subparsers."""
    p = subparsers.add_parser("train", help="meta-learn a conditioned SIREN on a dataset",
                              description="Meta-learn θ, φ0 and Meta-SGD step sizes (Algorithm 1). "
                                          "Re-running with the same --out resumes.")
    p.add_argument("--config", required=True, help="preset name (see 'vcinr presets') or YAML file")
    p.add_argument("--out", required=True, type=Path, help="model directory to create or resume")
    p.add_argument("--data", type=Path, help="dataset path, overriding data.path of the config")
    p.add_argument("--steps", type=int, help="outer steps, overriding train.steps")
    p.add_argument("--device", help="cpu or cuda[:N], overriding train.device")
    p.add_argument("--time-budget", type=float, help="stop after this many seconds of training")
    p.add_argument("--init", type=Path, metavar="MODEL",
                   help="start from this model's weights (same architecture; fresh optimiser and schedule)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override any config value, e.g. --set model.latent_dim=128 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def add_presets_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``presets`` on ``vcinr``'s subparsers."""
    p = subparsers.add_parser("presets", help="list the bundled config presets")
    p.set_defaults(func=_cmd_presets)
