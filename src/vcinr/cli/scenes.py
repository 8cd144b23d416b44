"""The ``make-scenes`` and ``render-scene`` subcommands: multi-view test scenes and turntables of coded ones."""

from __future__ import annotations

import argparse
from pathlib import Path

from vcinr.scenes.settings import SceneSettings


def _cmd_make_scenes(args: argparse.Namespace) -> None:
    from vcinr.scenes.bunny import make_scenes

    settings = SceneSettings(args.scenes, args.test_scenes, args.views, args.size, args.supersample, args.seed)
    written = make_scenes(args.out, settings, args.mesh, progress=not args.quiet)
    print(f"wrote {len(written)} scenes ({settings.views} views of {settings.size}x{settings.size}) to {args.out}")


def _cmd_render_scene(args: argparse.Namespace) -> None:
    from vcinr.bundled import resolve_model
    from vcinr.outputs import check_output_parent
    from vcinr.scenes.turntable import render_turntable

    check_output_parent(args.output)
    output = render_turntable(args.input, resolve_model(args.model), args.output, args.frames, args.size)
    print(f"{args.input.name} -> {output}: {args.frames} turntable views")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``make-scenes`` and ``render-scene`` on ``vcinr``'s subparsers."""
    defaults = SceneSettings()
    p = subparsers.add_parser(
        "make-scenes", help="render multi-view test scenes of the Stanford bunny (SRN layout)",
        description="Render scenes of the Stanford bunny (random rotation and colour, random cameras around it) "
                    "in the SRN Cars folder layout, as a stand-in for SRN Cars.")
    p.add_argument("out", type=Path, help="folder to create (train/ and test/ scene folders go inside)")
    p.add_argument("--scenes", type=int, default=defaults.scenes, help="number of scenes (default: 40)")
    p.add_argument("--test-scenes", type=int, default=defaults.test_scenes,
                   help="how many of them go to test/ (default: 4)")
    p.add_argument("--views", type=int, default=defaults.views, help="views per scene (default: 30)")
    p.add_argument("--size", type=int, default=defaults.size, help="view width and height in pixels (default: 64)")
    p.add_argument("--supersample", type=int, default=defaults.supersample,
                   help="rays per pixel along each axis (default: 2)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: 0)")
    p.add_argument("--mesh", type=Path, help="PLY mesh (default: ../shared/data's Stanford bunny, res3)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
