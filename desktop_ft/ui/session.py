"""The shared state of the wizard: one ``RunConfig`` that every page reads and writes.

Pages never reach into each other; they call ``Session.update`` and listen to ``configChanged``
(napari's model/view split: this object holds state, the pages render it).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from desktop_ft.core.config import RunConfig, validate
from desktop_ft.core.errors import ConfigError


class Session(QObject):
    """Holds the run configuration being designed; emits ``configChanged(RunConfig)`` on every change."""

    configChanged = Signal(object)

    def __init__(self, config: RunConfig | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._config = config or RunConfig()

    @property
    def config(self) -> RunConfig:
        return self._config

    def update(self, dotted: dict[str, Any]) -> RunConfig:
        """Apply ``{"training.batch_size": 8, ...}``; raises ``ConfigError`` (and changes nothing) if invalid."""
        config = self._config.replace(dotted)
        validate(config)
        self.set_config(config)
        return config

    def set_config(self, config: RunConfig) -> None:
        if config == self._config:
            return
        self._config = config
        self.configChanged.emit(config)

    def problem(self) -> ConfigError | None:
        """The first thing wrong with the current config, or None."""
        try:
            validate(self._config)
        except ConfigError as exc:
            return exc
        return None
