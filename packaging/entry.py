"""The offline bundle's entry point: the same ``desktop-ft`` command (window, CLI, training child)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # a frozen app re-enters here for multiprocessing children
    from desktop_ft.cli import main

    sys.exit(main())
