"""Meta-train a model from a config: ``vcinr.training.train(config, out)``, what ``vcinr train`` runs.

The outer loop (:mod:`vcinr.meta.training`) is modality-agnostic and never imports the data
loaders or the modality plug-ins (tests/test_layout.py); this module is where they meet it.
It loads the config's data section (:func:`vcinr.data.load_items`) and asks the modality
plug-in what the loop must know about the items: their loss, the coordinate range patches
use, and the feature value of silence for SNRs.

It sets nothing process-wide: the ``vcinr train`` command itself asks for the allocator
setting of long runs (:func:`vcinr.backend.keep_freed_memory`) and reads ``VCINR_COMPILE``.
"""

from __future__ import annotations

from pathlib import Path

from vcinr.config import Config
from vcinr.data import load_items, patch_coord_range
from vcinr.errors import ConfigError
from vcinr.meta.items import ItemSet
from vcinr.meta.model import ItemSpec
from vcinr.meta.training import TrainingData, TrainResult, meta_train
from vcinr.modalities import get_modality


def item_spec(config: Config, items: ItemSet) -> ItemSpec:
    """The geometry of ``items`` as a model records it, with their modality's loss and the patch range of ``config.data``."""
    modality = get_modality(items.modality)
    patched = config.data.patch is not None
    return ItemSpec(
        modality=items.modality,
        in_dim=items.coords.shape[-1],
        out_dim=items.features.shape[-1],
        loss=modality.loss,
        item_shape=tuple(items.features.shape[1:-1]),
        coord_range=patch_coord_range(config.data) if patched else None,
        observation=items.observation,
        max_points=items.max_points,
    )


def load_training_data(config: Config) -> TrainingData:
    """The train and test items of ``config.data`` and what the meta-learner must know about them."""
    if config.data is None:
        raise ConfigError("the config has no data section; pass --data PATH or add one")
    train_items, test_items = load_items(config.data, "train"), load_items(config.data, "test")
    return TrainingData(train_items, test_items, item_spec(config, train_items),
                        get_modality(train_items.modality).snr_centre)


def train(config: Config, out: str | Path, progress: bool = True, compile_: bool = False) -> TrainResult:
    """Meta-train (or resume) a model of ``config`` on its data set into ``out``.

    The items are loaded here and handed to :func:`vcinr.meta.training.meta_train`, which
    writes the checkpoint, the metrics log and the model.

    ``compile_``: run the meta-step through ``torch.compile`` (``VCINR_COMPILE=1`` on the command line).
    """
    return meta_train(config, load_training_data(config), out, progress, compile_)
