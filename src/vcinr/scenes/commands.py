"""The ``make-scenes`` and ``render-scene`` subcommands (wired into :mod:`vcinr.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_make_scenes(args: argparse.Namespace) -> None:
    from vcinr.scenes.bunny import run

    run(args)


def _cmd_render_scene(args: argparse.Namespace) -> None:
    from vcinr.bundled import resolve_model
    from vcinr.outputs import check_output_parent
    from vcinr.scenes.turntable import render_turntable

    check_output_parent(args.output)
    output = render_turntable(args.input, resolve_model(args.model), args.output, args.frames, args.size)
    print(f"{args.input.name} -> {output}: {args.frames} turntable views")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``make-scenes`` and ``render-scene`` on ``vcinr``'s subparsers."""
    from vcinr.scenes.settings import add_arguments

    p = subparsers.add_parser(
        "make-scenes", help="render multi-view test scenes of the Stanford bunny (SRN layout)",
        description="Render scenes of the Stanford bunny (random rotation and colour, random cameras around it) "
                    "in the SRN Cars folder layout, as a stand-in for SRN Cars.")
    add_arguments(p)
    p.set_defaults(func=_cmd_make_scenes)

    p = subparsers.add_parser(
        "render-scene", help="render a turntable of a compressed scene",
        description="Decode the latents of a compressed scene (.vci) and render views on a circle around it, "
                    "as a PNG grid or an animated GIF.")
    p.add_argument("input", type=Path, help="a .vci file of a scene")
    p.add_argument("--model", required=True,
                   help="the model directory (or bundled model name) it was compressed with")
    p.add_argument("-o", "--output", required=True, type=Path, help="turntable.png (grid) or turntable.gif")
    p.add_argument("--frames", type=int, default=12, help="views around the object (default: 12)")
    p.add_argument("--size", type=int, help="view width in pixels (default: that of the scene's views)")
    p.set_defaults(func=_cmd_render_scene)
