"""A stand-in for systemd-logind's and the XDG portal's inhibit calls, on a private D-Bus bus.

    python fake_inhibit_service.py BUS_ADDRESS RECORD_FILE

Owns ``org.freedesktop.login1`` and ``org.freedesktop.portal.Desktop``. Each call and each release
is appended to RECORD_FILE as one JSON line:
  {"call": "login1.Inhibit", "args": [...]}       the fd handed back is a pipe's write end; when the
  {"release": "login1", "id": 1}                   caller closes it the read end sees EOF = released
  {"call": "portal.Inhibit", "args": [...], "handle": "/org/freedesktop/portal/desktop/request/…"}
  {"release": "portal", "handle": "…"}             Request.Close on that handle
Real logind likewise releases an inhibitor when the last copy of its fd is closed.
"""

from __future__ import annotations

import json
import os
import select
import sys

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.fds import FileDescriptor
from jeepney.io.blocking import open_dbus_connection


def main(address: str, record: str) -> None:
    conn = open_dbus_connection(address, enable_fds=True)
    for name in ("org.freedesktop.login1", "org.freedesktop.portal.Desktop"):
        conn.send_and_get_reply(message_bus.RequestName(name))
    watched: dict[int, int] = {}  # read end fd → inhibitor id
    next_id = 0

    def note(entry: dict) -> None:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    note({"ready": os.getpid()})
    while True:
        ready, _, _ = select.select([conn.sock, *watched], [], [], 5.0)
        for fd in ready:
            if fd in watched:
                if not os.read(fd, 16):  # EOF: every copy of the write end is closed
                    note({"release": "login1", "id": watched.pop(fd)})
                    os.close(fd)
        if conn.sock not in ready:
            continue
        msg = conn.receive()
        h = msg.header
        if h.message_type != MessageType.method_call:
            continue
        member = h.fields.get(HeaderFields.member)
        iface = h.fields.get(HeaderFields.interface)
        path = h.fields.get(HeaderFields.path)
        if iface == "org.freedesktop.login1.Manager" and member == "Inhibit":
            next_id += 1
            r, w = os.pipe()
            watched[r] = next_id
            note({"call": "login1.Inhibit", "args": list(msg.body), "id": next_id})
            conn.send(new_method_return(msg, "h", (FileDescriptor(w),)))  # jeepney closes w once sent
        elif iface == "org.freedesktop.portal.Inhibit" and member == "Inhibit":
            next_id += 1
            handle = f"/org/freedesktop/portal/desktop/request/fake/{next_id}"
            window, flags, options = msg.body
            note({"call": "portal.Inhibit", "args": [window, flags, {k: v[1] for k, v in options.items()}],
                  "handle": handle})
            conn.send(new_method_return(msg, "o", (handle,)))
        elif iface == "org.freedesktop.portal.Request" and member == "Close":
            note({"release": "portal", "handle": path})
            conn.send(new_method_return(msg))
        elif iface == "org.freedesktop.DBus.Peer" and member == "Ping":
            conn.send(new_method_return(msg))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod", "s", (f"{iface}.{member}",)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
