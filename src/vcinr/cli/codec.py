"""The ``fit-codec``, ``compress`` and ``decompress`` subcommands.

Each handler takes the parsed :class:`argparse.Namespace`; user errors are raised as
:class:`vcinr.errors.VcinrError`, which :func:`vcinr.cli.main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

QUALITY_HELP = ("quality level: 1..K for the learned transform codecs, in order of increasing lambda (the "
                "rate usually, not always, rises with it), u<bits> for uniform quantisation (e.g. u6), or a "
                "codec file stem; default: the highest learned level")


def effort_steps(text: str) -> int:
    """``--effort``: a whole number of search steps, 0 to 10,000."""
    try:
        steps = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of steps, got {text!r}") from None
    if not 0 <= steps <= 10_000:
        raise argparse.ArgumentTypeError(f"must be between 0 and 10000, got {steps}")
    return steps


def _metric(key: str, value: float) -> str:
    """``psnr 23.41 dB`` for decibel figures (PSNR of whole held-out signals, per-patch mean, SNR)."""
    if key.startswith(("psnr", "snr")):
        return f"{key.replace('psnr', 'PSNR', 1).replace('snr', 'SNR', 1)} {value:.2f} dB"
    return f"{key} {value:.4f}"


def _refuse_bundled(model: Path) -> None:
    """``fit-codec`` writes into the model directory; a bundled model is part of the installed package."""
    if model.is_dir():
        return
    from vcinr.bundled import bundled_models
    from vcinr.errors import ModelError

    for bundled in bundled_models():
        if bundled.name == str(model):
            raise ModelError(f"{model} is a bundled model, which fit-codec does not change: copy it "
                             f"(cp -r {bundled.directory} my-{model}) and fit the copy")


def _cmd_fit_codec(args: argparse.Namespace) -> None:
    from vcinr.codec.fit import DEFAULT_BITS, DEFAULT_LAMBDAS, FitSettings, fit_codecs

    _refuse_bundled(args.model)
    # options left out keep FitSettings' defaults, which the help texts quote
    given = {name: getattr(args, name) for name in (
        "steps", "warmup_steps", "lr", "final_lr_fraction", "max_points", "aux_lr", "batch_size", "width",
        "blocks", "z_dim", "clip", "seed", "max_items") if getattr(args, name) is not None}
    settings = FitSettings(
        lambdas=tuple(args.lambdas) if args.lambdas is not None else DEFAULT_LAMBDAS,
        bits=tuple(args.bits) if args.bits is not None else DEFAULT_BITS, **given)
    result = fit_codecs(args.model, args.data, settings, progress=not args.quiet)
    from vcinr.codec.levels import list_levels
    from vcinr.meta.model import load_model

    order = list_levels(load_model(args.model))
    names = {lv.stem: lv.name for lv in order}
    rank = {lv.stem: i for i, lv in enumerate(order)}
    for level in sorted(result.levels, key=lambda lv: rank.get(lv.stem, len(rank))):
        metrics = ", ".join(_metric(k, v) for k, v in level.metrics.items())
        print(f"quality {names.get(level.stem, '?'):>3}  {level.stem:<24} {level.status:<8} {metrics}"
              + (f"  ({level.seconds:.1f} s)" if level.seconds else ""))
    fitted = sum(level.status != "skipped" for level in result.levels)
    print(f"{len(result.levels)} quality levels ({fitted} fitted, {len(result.levels) - fitted} unchanged) on "
          f"{result.items} training items (dim phi = {result.latent_dim}) -> {Path(args.model) / 'codecs'}; "
          "rate: the entropy model's estimate of the payload; quality: whole held-out signals")


def _check_compress(args: argparse.Namespace) -> None:
    """``compress``'s precheck (before torch is imported: a bad -o answers at once)."""
    from vcinr.outputs import check_output_file

    check_output_file(args.output, "bitstream", (".vci",))


def _cmd_compress(args: argparse.Namespace) -> None:
    from vcinr.bundled import model_for_input, resolve_model
    from vcinr.pipeline import compress_file

    if args.model is None:
        model = model_for_input(args.input).directory
        print(f"model: bundled '{model.name}' (see 'vcinr models')")
    else:
        model = resolve_model(args.model)
    from vcinr.codec.search import SearchSettings

    report = compress_file(args.input, model, args.quality, args.output, progress=not args.quiet,
                           search=SearchSettings() if args.effort is None else SearchSettings(steps=args.effort))
    print(report.summary())


def _check_decompress(args: argparse.Namespace) -> None:
    """``decompress``'s precheck; the suffix is checked against the model's modality, before decoding."""
    from vcinr.outputs import check_output_parent

    check_output_parent(args.output)


def _cmd_decompress(args: argparse.Namespace) -> None:
    from vcinr.bundled import model_for_bitstream, resolve_model
    from vcinr.pipeline import decompress_file

    if args.model is None:
        model = model_for_bitstream(args.input).directory
        print(f"model: bundled '{model.name}' (named by the bitstream's fingerprint)")
    else:
        model = resolve_model(args.model)
    report = decompress_file(args.input, model, args.output, progress=not args.quiet)
    print(report.summary())


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``fit-codec``, ``compress`` and ``decompress`` on ``vcinr``'s subparsers."""
    p = subparsers.add_parser(
        "fit-codec", help="fit the quality levels (transform coders, uniform quantisers) of a model",
        description="Compute the latents of the model's training items, then fit one learned transform "
                    "coder per lambda (loss = bpp + lambda * 255^2 * distortion, distortion measured on the "
                    "data through the frozen INR) and one uniform quantiser per bit depth. Codecs go to "
                    "MODEL/codecs/; re-running skips finished levels and resumes interrupted ones.")
    p.add_argument("--model", required=True, type=Path, help="model directory from 'vcinr train'")
    p.add_argument("--data", type=Path, help="training data path (default: the one in the model's config)")
    p.add_argument("--lambdas", type=float, nargs="+", metavar="L",
                   help="rate-distortion trade-offs, one learned level each "
                        "(default: 0.0003 0.001 0.003 0.01 0.03 0.1)")
    p.add_argument("--bits", type=int, nargs="*", metavar="B",
                   help="bit depths of the uniform levels (default: 3 4 5 6 7 8; give none for no uniform levels)")
    p.add_argument("--steps", type=int,
                   help="training steps per learned level with the distortion on the data (default: 600)")
    p.add_argument("--warmup-steps", type=int,
                   help="cheap steps before those, with a linearised distortion in latent space (default: 2000)")
    p.add_argument("--lr", type=float,
                   help="Adam learning rate, decayed on a cosine over --steps (default: 1e-3; the paper: 1e-4)")
    p.add_argument("--final-lr-fraction", type=float, help="the lr at the end, as a fraction of --lr (default: 0.1)")
    p.add_argument("--max-points", type=int,
                   help="points of each item the distortion is measured on per step (default: 256)")
    p.add_argument("--aux-lr", type=float, help="learning rate of the entropy model's quantiles (default: 1e-3)")
    p.add_argument("--batch-size", type=int, help="items per step (default: 64)")
    p.add_argument("--width", type=int, help="hidden width of g_a and g_s (default: max(2*dim(phi), 64))")
    p.add_argument("--blocks", type=int, help="residual blocks of g_a and g_s (default: 1)")
    p.add_argument("--z-dim", type=int, help="dimension of the code z (default: dim(phi))")
    p.add_argument("--clip", type=float,
                   help="uniform levels quantise normalised latents within +-CLIP standard deviations (default: 3)")
    p.add_argument("--max-items", type=int,
                   help="use at most this many training items (a seeded random subset over all sources)")
    p.add_argument("--seed", type=int, help="random seed (default: 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_fit_codec)

    p = subparsers.add_parser(
        "compress", help="compress a file into a .vci bitstream",
        description="Fit the latents of INPUT (patch by patch) with the model's inner loop, code them at the "
                    "chosen quality level and write a .vci bitstream. Prints the rate (bpp, or kbps for audio) "
                    "and the PSNR (or voxel accuracy) of exactly what 'vcinr decompress' will write.")
    p.add_argument("input", type=Path, help="file to compress (of the model's modality)")
    p.add_argument("--model", help="model directory with fitted codecs, or a bundled model's name "
                                   "(default: the bundled model of the input's modality; see 'vcinr models')")
    p.add_argument("--quality", "-q", help=QUALITY_HELP)
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="the .vci file to write (its folder must exist; checked before encoding)")
    p.add_argument("--effort", type=effort_steps, metavar="STEPS",
                   help="encoder effort: steps of rate-distortion search of the symbols of learned quality levels "
                        "(0: plain rounding; default: 20, see docs/codec.md); the decoder and the format do not "
                        "change")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compress, precheck=_check_compress)

    p = subparsers.add_parser(
        "decompress", help="decode a .vci bitstream into a file",
        description="Decode a .vci bitstream with the model it was made with (the quality level is read from "
                    "the bitstream) and write the signal in the format named by OUTPUT's suffix.")
    p.add_argument("input", type=Path, help="the .vci file")
    p.add_argument("--model", help="the model directory (or bundled model name) it was compressed with "
                                   "(default: the bundled model whose fingerprint the bitstream names)")
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="output file (e.g. .png, .wav, .npz) in an existing folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_decompress, precheck=_check_decompress)
