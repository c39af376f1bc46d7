"""``desktop-ft desktop-entry install|uninstall``: add Desktop FT to (or remove it from) the
application menu for this user (see ``desktop_ft.desktop_entry``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("desktop-entry", help="add Desktop FT to the application menu, or remove it",
                       description="Write (or remove) the desktop entry, the AppStream metainfo and the icons "
                                   "under $XDG_DATA_HOME (~/.local/share). The entry starts this install.")
    p.add_argument("action", choices=["install", "uninstall"])
    p.add_argument("--data-home", type=Path, default=None, metavar="DIR",
                   help="write there instead of $XDG_DATA_HOME (e.g. /usr/local/share for all users)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from desktop_ft import desktop_entry

    home = args.data_home or desktop_entry.data_home()
    if args.action == "install":
        done = desktop_entry.install(home)
        print(f"Installed {len(done.files)} files under {home}:")
        for path in done.files:
            print(f"  {path}")
        print(f"The menu entry runs: {done.exec_line[len('Exec='):]}")
    else:
        done = desktop_entry.uninstall(home)
        if not done.files:
            print(f"Nothing to remove: no Desktop FT menu entry under {home}.")
        for path in done.files:
            print(f"Removed {path}")
    return 0
