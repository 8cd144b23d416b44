"""Pretrained models shipped inside the package, so vcinr compresses files out of the box.

Each bundled model is an ordinary model directory (``config.json``, ``model.safetensors`` and
``codecs/``) under ``vcinr/models/<name>/``; how each was trained, on which data and with
which budget is in docs/models.md, and ``scripts/bundle_models.sh`` regenerates them.

* ``compress`` without ``--model`` takes the bundled model of the input's modality (from its
  suffix: ``.png`` → image, ``.flac`` → audio, ``.npz`` → ERA5 sphere grid);
* ``decompress`` without ``--model`` takes the bundled model whose fingerprint the ``.vci``
  names, so a file made with another model is refused with a hint instead of mis-decoded;
* ``--model NAME`` picks a bundled model by name, ``--model DIR`` any model directory (a
  directory always wins, so a better model trained on a GPU replaces the bundled one simply
  by being named).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from vcinr.codec.bitstream import fingerprint_prefix, short, unpack
from vcinr.errors import BitstreamError, InputError, ModelError
from vcinr.limits import MAX_VCI_BYTES, read_bounded
from vcinr.meta.model import read_model_json
from vcinr.modalities import modality_for_path
from vcinr.schema import check_item, fingerprint

MODELS = Path(str(resources.files("vcinr") / "models"))


@dataclass
class BundledModel:
    """A bundled model as listed from its ``config.json`` (weights not loaded)."""

    name: str
    directory: Path
    modality: str
    fingerprint: str
    item_shape: tuple[int, ...]

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the model and all its quality levels."""
        return sum(p.stat().st_size for p in self.directory.rglob("*") if p.is_file())


def bundled_models() -> list[BundledModel]:
    """Every bundled model, by name."""
    found = []
    if MODELS.is_dir():
        for directory in sorted(p for p in MODELS.iterdir() if (p / "config.json").is_file()):
            meta = read_model_json(directory)  # validated: a damaged bundled model is one line, not a traceback
            where = str(directory / "config.json")
            item = check_item(meta.get("item"), where)
            found.append(BundledModel(directory.name, directory, item["modality"],
                                      fingerprint(meta.get("fingerprint"), f"{where}: fingerprint"),
                                      tuple(item["item_shape"])))
    return found


def _names() -> str:
    return ", ".join(m.name for m in bundled_models()) or "none installed"


def resolve_model(model: str | Path) -> Path:
    """``model`` as a directory if it is one, else the bundled model of that name."""
    path = Path(model)
    if path.is_dir():
        return path
    for bundled in bundled_models():
        if bundled.name == str(model):
            return bundled.directory
    raise ModelError(f"{model}: neither a model directory nor a bundled model (bundled: {_names()})")


def model_for_input(path: str | Path) -> BundledModel:
    """The bundled model of the modality that ``path``'s suffix names."""
    modality = modality_for_path(path).name
    for bundled in bundled_models():
        if bundled.modality == modality:
            return bundled
    raise ModelError(f"{path}: no bundled model for {modality} files (bundled: {_names()}); pass --model DIR")


def model_for_bitstream(path: str | Path) -> BundledModel:
    """The bundled model whose fingerprint the ``.vci`` file at ``path`` names."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    header, _ = unpack(read_bounded(path, MAX_VCI_BYTES, "bitstream", BitstreamError))
    for bundled in bundled_models():
        if fingerprint_prefix(bundled.fingerprint) == header.model_fingerprint:
            return bundled
    raise BitstreamError(f"{path.name} was made with model {short(header.model_fingerprint)}, which is not a "
                         f"bundled one ({_names()}); pass the model it was compressed with as --model DIR")


def format_models(models: list[BundledModel]) -> str:
    """The table ``vcinr models`` prints: name, modality, item shape, size and quality levels."""
    from vcinr.codec.levels import list_levels
    from vcinr.meta.model import load_model

    if not models:
        return "no bundled models installed (see docs/models.md to train them)"
    lines = [f"{'name':<8}{'modality':<10}{'item':<10}{'size':>9}  "
             "quality levels (learned by increasing λ, then uniform by bits)"]
    for m in models:
        levels = " ".join(level.name for level in list_levels(load_model(m.directory)))
        item = "x".join(str(s) for s in m.item_shape)
        lines.append(f"{m.name:<8}{m.modality:<10}{item:<10}{m.size_bytes / 1e6:>6.2f} MB  {levels or '(none fitted)'}")
    lines.append(f"in {MODELS}; compress picks one by the input's modality, decompress by the bitstream's "
                 "fingerprint; --model DIR overrides")
    return "\n".join(lines)


__all__ = ["MODELS", "BundledModel", "bundled_models", "format_models", "model_for_bitstream", "model_for_input",
           "resolve_model"]
