"""Building blocks every page shares: a titled, scrollable page and a rounded card."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from desktop_ft.ui import theme


class Card(QFrame):
    """A rounded panel with an optional title row (icon + title)."""

    def __init__(self, title: str | None = None, icon: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Card")
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(16, 14, 16, 14)
        self.body.setSpacing(8)
        if title:
            row = QHBoxLayout()
            row.setSpacing(8)
            if icon:
                pic = QLabel()
                pic.setPixmap(theme.icon(icon, theme.colors().accent).pixmap(20, 20))
                row.addWidget(pic)
            row.addWidget(theme.label(title, "CardTitle"))
            row.addStretch(1)
            self.title_row = row
            self.body.addLayout(row)

    def set_selected(self, selected: bool) -> None:
        self.setProperty("selected", "true" if selected else "false")
        self.style().unpolish(self)
        self.style().polish(self)


class Note(QFrame):
    """A plain, dashed note for things that are not available (never fake data in their place)."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Note")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        pic = QLabel()
        pic.setPixmap(theme.icon("mdi6.information-outline", theme.colors().muted).pixmap(18, 18))
        lay.addWidget(pic, 0, Qt.AlignmentFlag.AlignTop)
        self.text = theme.label(text, "Muted", wrap=True)
        lay.addWidget(self.text, 1)


class Page(QWidget):
    """Title, one-line intro, then ``self.content`` (a vertical layout) inside a scroll area."""

    def __init__(self, title: str, intro: str, parent: QWidget | None = None, *, scroll: bool = True) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(28, 22, 28, 10)
        outer.setSpacing(4)
        outer.addWidget(theme.label(title, "PageTitle"))
        intro_label = theme.label(intro, "PageIntro", wrap=True)
        outer.addWidget(intro_label)
        outer.addSpacing(10)
        inner = QWidget()
        self.content = QVBoxLayout(inner)
        self.content.setContentsMargins(0, 0, 6, 0)
        self.content.setSpacing(14)
        if scroll:
            area = QScrollArea()
            area.setWidgetResizable(True)
            area.setFrameShape(QFrame.Shape.NoFrame)
            area.setWidget(inner)
            inner.setAutoFillBackground(False)
            outer.addWidget(area, 1)
        else:
            outer.addWidget(inner, 1)
