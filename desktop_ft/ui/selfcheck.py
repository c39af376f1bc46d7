"""Start-up self-check of the Qt binding: does a plain Qt call leak a reference?

PySide6-Essentials 6.12.0 drops one reference to ``None`` on every void Qt call on CPython < 3.12
(3.12 made ``None`` immortal, which hides it). The process then aborts with
``Fatal Python error: none_dealloc`` after some tens of thousands of calls — a minute into following
a live run. Measuring it takes a millisecond, so the window checks at start-up and says so in a
dialog instead of vanishing later; ``desktop-ft doctor`` prints the same sentence.
"""

from __future__ import annotations

import sys

#: void Qt calls made by the probe; a leaking binding loses one ``None`` reference for each.
PROBE_CALLS = 200

#: references to ``None`` handed back for those the probe's own calls lost, so the probe itself
#: never brings the process closer to the abort it looks for.
_REPAID: list[None] = []


def none_refs_lost_per_call() -> float:
    """References to ``None`` lost per void Qt call (0.0 on a sound binding or on CPython >= 3.12)."""
    if sys.version_info >= (3, 12):  # None is immortal: its count never moves, nothing can abort
        return 0.0
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")
    lost = max(before - sys.getrefcount(None), 0)
    _REPAID.extend([None] * lost)
    return lost / PROBE_CALLS


def qt_problem() -> str | None:
    """One sentence saying what is wrong with this Qt binding and how to fix it, or None."""
    lost = none_refs_lost_per_call()
    if lost < 0.5:
        return None
    import PySide6

    return (f"PySide6 {PySide6.__version__} on Python {sys.version.split()[0]} leaks a reference on every "
            "Qt call, so the window would close by itself after a few minutes; install the tested version "
            "with 'pip install PySide6-Essentials==6.11.3 shiboken6==6.11.3' (or run 'make setup'), "
            "or use Python 3.12 or newer.")
