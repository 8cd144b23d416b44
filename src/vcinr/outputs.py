"""Checks on the file a command is about to write, made before any work starts.

An encode can take minutes; finding out after it that ``-o`` names a folder that does not
exist, a place that cannot be written or a ``.png`` for a ``.vci`` bitstream wastes them, and
the error then names the temporary file the atomic writer used.  So the commands check first:

* a missing parent directory is an error (it is not created: a typo in ``-o`` should not
  leave folders behind);
* the parent must take a new file: one is created and removed beside the target, the same
  way the atomic writer will create its temporary file;
* a target that is a directory, or whose suffix is not one the command writes, is an error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from vcinr.errors import InputError


def check_output_file(path: Path, what: str, suffixes: Sequence[str] = ()) -> None:
    """Raise :class:`InputError` (one line) unless ``path`` can be written as a ``what`` file.

    Args:
        path: the file to be written.
        what: what it will hold, for messages (``"bitstream"``).
        suffixes: the suffixes it may have (lower case, with the dot); empty for any.
    """
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{path}: a {what} is written as {' or '.join(suffixes)}, not "
                         f"'{path.suffix or '(no suffix)'}'")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; name the {what} file to write")
    check_output_parent(path)


def check_output_parent(path: Path) -> None:
    """Raise :class:`InputError` (one line) unless ``path``'s directory exists and takes new files."""
    parent = path.parent
    if not parent.exists():
        raise InputError(f"{path}: directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise InputError(f"{path}: {parent} is not a directory")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot write in {parent} ({exc.strerror or exc})") from None
