"""Latent codecs, quality levels, their fitting and the ``.vci`` bitstream container.

* :mod:`~vcinr.codec.codecs` — :class:`LearnedCodec` (VC-INR transform coder) and
  :class:`UniformCodec` (COIN++ uniform quantisation), φ ↔ integer symbols.
* :mod:`~vcinr.codec.entropy` — 16-bit CDF tables and constriction's range coder.
* :mod:`~vcinr.codec.bottleneck` — the factorised entropy model (a torch port of CompressAI's).
* :mod:`~vcinr.codec.transform` — the trainable transform coder (only ``fit-codec`` needs it).
* :mod:`~vcinr.codec.fit` — ``vcinr fit-codec``: latents of the training items, RD training.
* :mod:`~vcinr.codec.levels` — quality levels stored under ``MODEL_DIR/codecs/``.
* :mod:`~vcinr.codec.bitstream` — the ``.vci`` container (``docs/bitstream.md``).

The ``fit-codec``, ``compress`` and ``decompress`` commands are in :mod:`vcinr.cli.codec`.
Nothing is imported here, so importing a submodule pays only for what it needs; the codec
classes come from :mod:`~vcinr.codec.codecs`.
"""
