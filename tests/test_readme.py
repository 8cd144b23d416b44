"""Every command in the README works: the cheap ones are run here, the rest are parsed here and run elsewhere.

The README is what a newcomer copies. These tests read its ``sh`` blocks, so a renamed flag, a
removed preset or a subcommand nobody tests any more fails CI instead of the user:

* every ``vcinr`` command line is accepted by the real argument parser, and every
  ``--config`` it names is a bundled preset;
* ``presets``, ``models`` and the bundled-model ``compress`` / ``decompress`` pair are run
  as written (with a bundled sample image for ``photo.png``);
* the commands too slow to run here (training, ``fit-codec``, ``eval``, scenes, ``torchrun``)
  are each exercised by a named test module, and that module really calls them;
* the quick start's two commands are the Makefile's targets and ``.ci/run`` calls the second.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE_IMAGE = ROOT / "src" / "vcinr" / "samples" / "demo" / "kodim20-crop.png"

# subcommand -> (test module that runs it end to end, text that module must contain)
EXERCISED_ELSEWHERE = {
    "train": ("test_train_cli.py", '"-m", "vcinr", "train"'),
    "fit-codec": ("test_codec.py", '"fit-codec"'),
    "eval": ("test_eval_harness.py", 'main(["eval"'),
    "make-scenes": ("test_scenes.py", '"make-scenes"'),
    "render-scene": ("test_scenes.py", '"render-scene"'),
    "demo": ("test_bundled.py", '["demo"'),
}
RUN_HERE = {"presets", "models", "compress", "decompress"}


def readme_commands() -> list[list[str]]:
    """Command lines of the README's ``sh`` blocks: continuations joined, comments dropped, split as a shell would."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def vcinr_commands() -> list[list[str]]:
    """The argument lists of the README's ``vcinr`` commands (``.venv/bin/vcinr`` or ``-m vcinr``)."""
    found = []
    for argv in readme_commands():
        if Path(argv[0]).name == "vcinr":
            found.append(argv[1:])
        elif "-m" in argv and argv[argv.index("-m") + 1] == "vcinr":
            found.append(argv[argv.index("-m") + 2:])
    return found


def test_the_readme_has_commands_for_every_part_of_the_project() -> None:
    used = {argv[0] for argv in vcinr_commands()}
    assert {"train", "compress", "decompress", "fit-codec", "eval", "models", "presets"} <= used
    assert any(argv[0] == "torchrun" for argv in readme_commands()), "the README shows how to scale out"


@pytest.mark.parametrize("argv", vcinr_commands(), ids=lambda a: " ".join(a)[:60])
def test_every_readme_command_is_accepted_by_the_cli(argv: list[str]) -> None:
    from vcinr.cli import build_parser
    from vcinr.config import preset_names

    args = build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown flag or subcommand
    assert args.command in RUN_HERE | set(EXERCISED_ELSEWHERE)
    if getattr(args, "config", None) is not None:
        assert args.config in preset_names(), f"--config {args.config} is not a bundled preset"


@pytest.mark.parametrize("command", sorted(EXERCISED_ELSEWHERE))
def test_commands_too_slow_for_here_are_run_by_another_test(command: str) -> None:
    module, text = EXERCISED_ELSEWHERE[command]
    assert text in (ROOT / "tests" / module).read_text(), f"{module} no longer runs 'vcinr {command}'"


def test_quick_start_is_the_makefile_and_ci_runs_its_test_command() -> None:
    readme = README.read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick_start, flags=re.S).group(1)
    assert [line.split("#")[0].strip() for line in block.strip().splitlines()] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t.*vcinr demo", makefile, flags=re.M)
    assert re.search(r"^test: .*\n\t.*pytest", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_listing_commands_run_as_written(vcinr_main, capsys) -> None:
    for argv in (a for a in vcinr_commands() if a[0] in ("presets", "models")):
        assert vcinr_main(argv) == 0
        assert capsys.readouterr().out.strip()


def test_bundled_compress_and_decompress_run_as_written(vcinr_main, tmp_path, monkeypatch, capsys) -> None:
    """The README's own-files example, ``photo.png`` being a bundled sample the models never saw."""
    (tmp_path / "photo.png").write_bytes(SAMPLE_IMAGE.read_bytes())
    monkeypatch.chdir(tmp_path)
    pair = [a for a in vcinr_commands() if a[0] in ("compress", "decompress") and "--model" not in a]
    assert [a[0] for a in pair] == ["compress", "decompress"]
    for argv in pair:
        assert vcinr_main(argv + ["--quiet"]) == 0, argv
    out = capsys.readouterr().out
    assert "bpp" in out and "PSNR" in out
    decoded = tmp_path / pair[1][pair[1].index("-o") + 1]
    from PIL import Image

    assert Image.open(decoded).size == Image.open(SAMPLE_IMAGE).size
