"""Latent codecs, quality levels, their fitting and the ``.vci`` bitstream container.

* :mod:`~vcinr.codec.codecs` — :class:`LearnedCodec` (VC-INR transform coder) and
  :class:`UniformCodec` (COIN++ uniform quantisation), φ ↔ integer symbols.
* :mod:`~vcinr.codec.entropy` — 16-bit CDF tables and CompressAI's rANS coder.
* :mod:`~vcinr.codec.transform` — the trainable transform coder (imports CompressAI).
* :mod:`~vcinr.codec.fit` — ``vcinr fit-codec``: latents of the training items, RD training.
* :mod:`~vcinr.codec.levels` — quality levels stored under ``MODEL_DIR/codecs/``.
* :mod:`~vcinr.codec.bitstream` — the ``.vci`` container (``docs/bitstream.md``).
* :mod:`~vcinr.codec.commands` — the ``fit-codec``, ``compress`` and ``decompress`` commands.

Submodules are imported lazily; ``import vcinr.codec`` stays cheap.
"""

from vcinr.codec.codecs import LatentCodec, LearnedCodec, ResidualMLP, UniformCodec

__all__ = ["LatentCodec", "LearnedCodec", "ResidualMLP", "UniformCodec"]
