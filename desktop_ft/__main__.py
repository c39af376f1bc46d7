"""``python -m desktop_ft`` does what the ``desktop-ft`` command does."""

import sys

from desktop_ft.cli import main

sys.exit(main())
