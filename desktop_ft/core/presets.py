"""Applying a preset: the one rule the window's preset buttons and ``desktop-ft train --preset`` share.

A preset is named in the registry (``methods.PRESETS``); applying one also sets the learning rate
recommended for the run's method and task, and the task may have to be read off the dataset, which
is why this sits above both the registry and the dataset readers.
"""

from __future__ import annotations

from desktop_ft.core import datasets as ds
from desktop_ft.core.config import RunConfig
from desktop_ft.core.methods import PRESETS, preset_key, recommended_learning_rate, resolve_task


def apply_preset(config: RunConfig, name: str, data_kind: str | None = None) -> RunConfig:
    """``config`` with the preset's settings and the learning rate recommended for its method and task.

    The one preset rule: the window's preset buttons and ``desktop-ft train --preset`` both call it.
    ``method.task: auto`` is resolved from ``data_kind``, or, when that is not given, from the first
    rows of ``config.data.path`` (preference data → DPO's lower learning rate).
    """
    preset = PRESETS[preset_key(name)]
    if data_kind is None and config.method.task == "auto":
        data_kind = dataset_kind(config)
    task = resolve_task(config.method.task, data_kind)
    lr = recommended_learning_rate(config.method.method, task)
    return config.replace({**preset.overrides, "training.learning_rate": lr})


def dataset_kind(config: RunConfig) -> str:
    """The kind of the run's dataset (conversation, preference, ...), read from its first 20 rows."""
    return ds.load_dataset(config.data.path, columns=config.data.columns or None, max_rows=20).kind
