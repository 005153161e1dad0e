#!/usr/bin/env python3
"""Not a test: a stand-in for polkitd on a test's private bus, run by test-dbus.py with a Python
that has python3-dbus and GObject introspection (Debian's /usr/bin/python3).

    test-dbus-fake-polkit.py BUS-ADDRESS ALLOWED-ACTIONS LOG

It owns org.freedesktop.PolicyKit1 and answers CheckAuthorization: authorized when the action id
is in the comma-separated ALLOWED-ACTIONS, never a challenge. Each query is appended to LOG as a
JSON line (subject kind, bus name, action id, flags), so the test sees what the daemon asked.
"""

import json
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

AUTHORITY = "org.freedesktop.PolicyKit1.Authority"


class Authority(dbus.service.Object):
    def __init__(self, bus, allowed, log):
        super().__init__(bus, "/org/freedesktop/PolicyKit1/Authority")
        self.allowed, self.log = allowed, log

    @dbus.service.method(AUTHORITY, in_signature="(sa{sv})sa{ss}us", out_signature="(bba{ss})")
    def CheckAuthorization(self, subject, action_id, details, flags, cancellation_id):
        kind, fields = subject
        self.log.write(json.dumps({"subject": str(kind), "name": str(fields.get("name", "")),
                                   "action": str(action_id), "flags": int(flags)}) + "\n")
        self.log.flush()
        return (str(action_id) in self.allowed, False, dbus.Dictionary({}, signature="ss"))


def main():
    address, allowed, log_path = sys.argv[1:4]
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    log = open(log_path, "a")
    authority = Authority(bus, set(a for a in allowed.split(",") if a), log)
    name = dbus.service.BusName("org.freedesktop.PolicyKit1", bus)
    print("ready", flush=True)
    GLib.MainLoop().run()
    del authority, name


if __name__ == "__main__":
    main()
