"""Widgets generated from the config dataclass fields — never a hand-written list.

Each field's type picks the editor (bool → checkbox, ``choices`` → combo box, int → spin box,
float → spin box or a text box for tiny values like learning rates, text → line edit), its
``min``/``max`` metadata sets the range and its ``help`` becomes the tooltip. A change is applied
through ``Session.update``; a value the config refuses is explained in place, under the field.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QGridLayout, QLabel, QLineEdit, QSpinBox,
                               QWidget)

from desktop_ft.core.config import section_types
from desktop_ft.core.errors import ConfigError
from desktop_ft.ui import theme
from desktop_ft.ui.session import Session


def fields_of(section_filter: typing.Callable[[str, dataclasses.Field], bool]
              ) -> list[tuple[str, dataclasses.Field, Any]]:
    """``(dotted key, field, type hint)`` for every leaf config field the filter keeps, in declaration
    order. Nested settings sections (``method.dpo.beta``) are walked too; the filter sees the dotted
    parent (``method.dpo``) as the section."""
    out: list[tuple[str, dataclasses.Field, Any]] = []
    order = ("training", "method", "data", "model", "output")
    sections = sorted(section_types().items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))

    def walk(prefix: str, typ: type) -> None:
        hints = typing.get_type_hints(typ)
        for f in dataclasses.fields(typ):
            hint = hints[f.name]
            if dataclasses.is_dataclass(hint):
                walk(f"{prefix}.{f.name}", hint)
            elif section_filter(prefix, f):
                out.append((f"{prefix}.{f.name}", f, hint))

    for section, typ in sections:
        walk(section, typ)
    return out


def get_value(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value[part]
    return value


def pretty(name: str) -> str:
    text = name.replace("_", " ")
    for word, fixed in (("lora", "LoRA"), ("lr", "LR"), ("id", "ID")):
        text = " ".join(fixed if w == word else w for w in text.split())
    return text[0].upper() + text[1:]


class _Editor:
    """One field's editor: reads/writes the widget and reports edits."""

    def __init__(self, key: str, f: dataclasses.Field, hint: Any, on_edit: typing.Callable[[str, Any], None]) -> None:
        self.key, self.field, self.on_edit = key, f, on_edit
        meta = f.metadata
        args = typing.get_args(hint)
        self.optional = type(None) in args
        union = args and typing.get_origin(hint) is not dict
        base = next((a for a in args if a is not type(None)), hint) if union else hint
        self.kind = "text"
        if base is bool:
            w: QWidget = QCheckBox()
            w.toggled.connect(lambda _v: self._emit())
            self.kind = "bool"
        elif "choices" in meta:
            w = QComboBox()
            w.addItems([str(c) for c in meta["choices"]])
            w.currentTextChanged.connect(lambda _v: self._emit())
            self.kind = "choice"
        elif base is int and not self.optional:
            w = QSpinBox()
            w.setRange(int(meta.get("min", -1_000_000)), int(meta.get("max", 1_000_000_000)))
            w.setKeyboardTracking(False)
            if meta.get("min") == -1:
                w.setSpecialValueText("off (-1)")
            w.valueChanged.connect(lambda _v: self._emit())
            self.kind = "int"
        elif base is float and not (meta.get("min", 1) and meta.get("min", 1) < 1e-3):
            w = QDoubleSpinBox()
            w.setDecimals(3)
            w.setSingleStep(0.01 if meta.get("max", 10) <= 1 else 0.1)
            w.setRange(float(meta.get("min", 0.0)), float(meta.get("max", 1e9)))
            w.setKeyboardTracking(False)
            w.valueChanged.connect(lambda _v: self._emit())
            self.kind = "float"
        else:
            w = QLineEdit()
            w.setPlaceholderText("not set" if self.optional or base is str else "")
            w.editingFinished.connect(self._emit)
            self.kind = "line"
            self.base = base
        self.widget = w
        w.setToolTip(meta.get("help", ""))
        w.setMinimumWidth(150)
        self._loading = False

    def set(self, value: Any) -> None:
        self._loading = True
        w = self.widget
        try:
            if self.kind == "bool":
                w.setChecked(bool(value))
            elif self.kind == "choice":
                w.setCurrentText(str(value))
            elif self.kind == "int":
                w.setValue(int(value))
            elif self.kind == "float":
                w.setValue(float(value))
            else:
                if value is None:
                    w.setText("")
                elif isinstance(value, dict):
                    w.setText(", ".join(f"{k}: {v}" for k, v in value.items()))
                elif isinstance(value, float):
                    w.setText(f"{value:g}")
                else:
                    w.setText(str(value))
        finally:
            self._loading = False

    def value(self) -> Any:
        w = self.widget
        if self.kind == "bool":
            return w.isChecked()
        if self.kind == "choice":
            return w.currentText()
        if self.kind == "int":
            return w.value()
        if self.kind == "float":
            return w.value()
        text = w.text().strip()
        if not text:
            return None if self.optional else ({} if self.base is dict or typing.get_origin(self.base) is dict else "")
        if typing.get_origin(self.base) is dict or self.base is dict:
            import yaml

            try:
                return yaml.safe_load("{" + text + "}")
            except yaml.YAMLError:
                return text
        if self.base in (int, float):
            import yaml

            try:
                return yaml.safe_load(text)
            except yaml.YAMLError:
                return text
        return text

    def _emit(self) -> None:
        if not self._loading:
            self.on_edit(self.key, self.value())


class SettingsForm(QWidget):
    """A two-column grid of the fields the filter keeps, bound to a ``Session``."""

    edited = Signal(str)  # dotted key

    def __init__(self, session: Session, keep: typing.Callable[[str, dataclasses.Field], bool],
                 parent: QWidget | None = None, columns: int = 2) -> None:
        super().__init__(parent)
        self.session = session
        self.editors: dict[str, _Editor] = {}
        self.errors: dict[str, QLabel] = {}
        self.cells: dict[str, list[QWidget]] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(14)
        grid.setVerticalSpacing(4)
        for i, (key, f, hint) in enumerate(fields_of(keep)):
            row, col = divmod(i, columns)
            editor = _Editor(key, f, hint, self._on_edit)
            name = QLabel(pretty(f.name))
            name.setToolTip(f.metadata.get("help", ""))
            help_icon = QLabel()
            help_icon.setPixmap(theme.icon("mdi6.help-circle-outline", theme.colors().muted).pixmap(14, 14))
            help_icon.setToolTip(f.metadata.get("help", ""))
            err = theme.label("", "Bad", wrap=True)
            err.hide()
            cell = QGridLayout()
            cell.setHorizontalSpacing(6)
            cell.addWidget(name, 0, 0)
            cell.addWidget(help_icon, 0, 1)
            cell.addWidget(editor.widget, 1, 0, 1, 3)
            cell.addWidget(err, 2, 0, 1, 3)
            cell.setColumnStretch(2, 1)
            grid.addLayout(cell, row * 2, col)
            grid.setRowMinimumHeight(row * 2 + 1, 8)
            self.editors[key] = editor
            self.errors[key] = err
            self.cells[key] = [name, help_icon, editor.widget]
        for c in range(columns):
            grid.setColumnStretch(c, 1)
        session.configChanged.connect(self._on_config_changed)
        self._on_config_changed(session.config)

    def _on_config_changed(self, config) -> None:
        data = config.to_dict()
        for key, editor in self.editors.items():
            editor.set(get_value(data, key))

    def show_only(self, keys: set[str]) -> None:
        """Hide every field whose key is not in ``keys`` (method-specific sections)."""
        for key, widgets in self.cells.items():
            for w in widgets:
                w.setVisible(key in keys)
            if key not in keys:
                self.errors[key].hide()

    def _on_edit(self, key: str, value: Any) -> None:
        err = self.errors[key]
        try:
            self.session.update({key: value})
        except ConfigError as exc:
            err.setText(str(exc))
            err.show()
            return
        err.hide()
        self.edited.emit(key)
