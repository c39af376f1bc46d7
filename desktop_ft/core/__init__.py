"""The Qt-free core: models, datasets, methods, estimate, engine, runs, chat, export.

Nothing here imports PySide6, pyqtgraph or superqt (an import-linter contract checks it), and the
heavy libraries (torch, transformers, peft, trl) are imported inside the functions that use them.
"""
