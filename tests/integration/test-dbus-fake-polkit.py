#!/usr/bin/env python3
"""Not a test: a stand-in for polkitd on a test's private bus, run by test-dbus.py with a Python
that has python3-dbus and GObject introspection (Debian's /usr/bin/python3).

    test-dbus-fake-polkit.py BUS-ADDRESS ALLOWED-ACTIONS LOG [hold]

It owns org.freedesktop.PolicyKit1 and answers CheckAuthorization: authorized when the action id
is in the comma-separated ALLOWED-ACTIONS, never a challenge. Each query is appended to LOG as a
JSON line (subject kind, bus name, action id, flags), so the test sees what the daemon asked.
With "hold", the answers wait until it gets SIGUSR1 (as a real polkit waits for an authentication
agent), which answers every query held so far.
"""

import json
import signal
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

AUTHORITY = "org.freedesktop.PolicyKit1.Authority"


class Authority(dbus.service.Object):
    def __init__(self, bus, allowed, log, hold):
        super().__init__(bus, "/org/freedesktop/PolicyKit1/Authority")
        self.allowed, self.log = allowed, log
        self.held = [] if hold else None
        if hold:
            GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGUSR1, self.release)

    def release(self):
        held, self.held = self.held, []
        for answer in held:
            answer()
        return True  # keep the signal source

    @dbus.service.method(AUTHORITY, in_signature="(sa{sv})sa{ss}us", out_signature="(bba{ss})",
                         async_callbacks=("reply", "error"))
    def CheckAuthorization(self, subject, action_id, details, flags, cancellation_id, reply, error):
        kind, fields = subject
        verdict = (str(action_id) in self.allowed, False, dbus.Dictionary({}, signature="ss"))
        # Logged once the answer is held, so a test that read the line can release it.
        if self.held is None:
            reply(verdict)
        else:
            self.held.append(lambda: reply(verdict))
        self.log.write(json.dumps({"subject": str(kind), "name": str(fields.get("name", "")),
                                   "action": str(action_id), "flags": int(flags)}) + "\n")
        self.log.flush()


def main():
    address, allowed, log_path = sys.argv[1:4]
    hold = sys.argv[4:5] == ["hold"]
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    log = open(log_path, "a")
    authority = Authority(bus, set(a for a in allowed.split(",") if a), log, hold)
    name = dbus.service.BusName("org.freedesktop.PolicyKit1", bus)
    print("ready", flush=True)
    GLib.MainLoop().run()
    del authority, name


if __name__ == "__main__":
    main()
