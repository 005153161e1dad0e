#!/bin/sh
# test-dbus-files.sh: the bus policy, the activation file and the polkit actions (TAP):
#  - the policy and the polkit file are well-formed XML; dbus-daemon accepts the policy (a private
#    bus whose configuration includes it must start);
#  - everyone may send to every interface of the introspection XML (the daemon authorizes each
#    call: root, groups, polkit), and only user entropy may own the name;
#  - only root, user entropy and the daemon's default read and admin groups may receive its
#    signals (they carry what only readers may see);
#  - the activation file names the unit and user the units use;
#  - the polkit actions the daemon's authorization uses all exist in the policy.
set -u
srcdir=${ENTROPY_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$srcdir/tests/system/lib.sh" # require_tools, have_tools
builddir=${ENTROPY_BUILDDIR:-$(pwd)}
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/entropy-dbus.XXXXXX")
bus_pid=
trap '[ -n "$bus_pid" ] && kill "$bus_pid" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM

conf=$srcdir/dbus/org.entropy.Control1.conf
policy=$srcdir/dbus/org.entropy.Control1.policy
xml=$srcdir/dbus/org.entropy.Control1.xml
service=$builddir/dbus/org.entropy.Control1.service

for f in "$conf" "$policy"; do
    if python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$f" 2>"$tmp/err"; then
        ok "$(basename "$f") is well-formed XML"
    else
        sed 's/^/# /' "$tmp/err"
        not_ok "$(basename "$f") is well-formed XML"
    fi
done

if have_tools dbus-daemon; then
    cat >"$tmp/bus.conf" <<CONF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$tmp/bus</listen>
  <policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/></policy>
  <include>$conf</include>
</busconfig>
CONF
    dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile --print-address >"$tmp/addr" 2>"$tmp/bus.err" &
    bus_pid=$!
    i=0
    while [ ! -s "$tmp/addr" ] && kill -0 "$bus_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -s "$tmp/addr" ]; then
        ok "dbus-daemon starts with the bus policy included"
    else
        sed 's/^/# /' "$tmp/bus.err"
        not_ok "dbus-daemon starts with the bus policy included"
    fi
else
    skip "dbus-daemon not installed"
fi

if grep -q '<policy user="entropy">' "$conf" && grep -A2 '<policy user="entropy">' "$conf" | grep -q 'allow own="org.entropy.Control1"' &&
   [ "$(grep -c 'allow own=' "$conf")" -eq 1 ]; then
    ok "only user entropy may own org.entropy.Control1"
else
    not_ok "only user entropy may own org.entropy.Control1"
fi

# hostnamed's approach: the bus lets everyone send to the service's interfaces and the daemon
# authorizes each call (root, groups, polkit), so that a caller polkit would authorize is not
# stopped by the bus before the daemon can ask polkit.
default_ctx=$(sed -n '/<policy context="default">/,/<\/policy>/p' "$conf")
if printf '%s\n' "$default_ctx" | grep -q 'deny send_destination="org.entropy.Control1"'; then
    not_ok "the default context does not refuse sending to org.entropy.Control1"
else
    ok "the default context does not refuse sending to org.entropy.Control1"
fi
# The service's signals carry what only readers may see (InterfacesAdded has a new job's command
# and arguments): the default context keeps them from everyone, readers get them.
if printf '%s\n' "$default_ctx" | grep -q 'deny receive_sender="org.entropy.Control1" receive_type="signal"/>'; then
    ok "the default context refuses receiving the signals of org.entropy.Control1"
else
    not_ok "the default context refuses receiving the signals of org.entropy.Control1"
fi
rules=$(python3 -c 'import re, sys; print(re.sub(r"<!--.*?-->", "", open(sys.argv[1]).read(), flags=re.S))' "$conf")
groups=$(sed -n 's/^#define BUS_\(READ\|ADMIN\)_GROUP_DEFAULT *"\([^"]*\)"$/\2/p' "$srcdir/daemon/bus-internal.h")
[ -n "$groups" ] || not_ok "the daemon's default groups are found in daemon/bus-internal.h"
for who in 'user="root"' 'user="entropy"' $(for g in $groups; do echo "group=\"$g\""; done); do
    if printf '%s\n' "$rules" | sed -n "/<policy $who>/,/<\/policy>/p" |
            grep -q 'allow receive_sender="org.entropy.Control1" receive_type="signal"/>'; then
        ok "policy $who may receive the signals"
    else
        not_ok "policy $who may receive the signals"
    fi
done
if [ "$(printf '%s\n' "$rules" | grep -c 'allow receive_sender=')" -eq $((2 + $(echo $groups | wc -w))) ]; then
    ok "nobody else may receive them"
else
    not_ok "nobody else may receive them"
fi

if [ -f "$xml" ]; then
    for i in $(sed -n 's/.*<interface name="\([A-Za-z0-9.]*\)">.*/\1/p' "$xml") \
             org.freedesktop.DBus.Introspectable org.freedesktop.DBus.Properties org.freedesktop.DBus.ObjectManager; do
        if printf '%s\n' "$default_ctx" | tr -s ' \n' ' ' |
                grep -q "allow send_destination=\"org.entropy.Control1\" send_interface=\"$i\"/>"; then
            ok "everyone may send to interface $i (the daemon authorizes each call)"
        else
            not_ok "everyone may send to interface $i (the daemon authorizes each call)"
        fi
    done
    # Methods named in the policy must exist (a rename would silently leave a stale rule).
    for m in $(sed -n 's/.*send_member="\([A-Za-z]*\)".*/\1/p' "$conf"); do
        if grep -q "<method name=\"$m\">" "$xml"; then ok "method $m named in the policy exists"; else not_ok "method $m named in the policy exists"; fi
    done
else
    not_ok "dbus/org.entropy.Control1.xml exists"
fi

if [ -f "$service" ]; then
    for kv in Name=org.entropy.Control1 SystemdService=entropy-control.service User=entropy; do
        if grep -qx "$kv" "$service"; then ok "activation file: $kv"; else not_ok "activation file: $kv"; fi
    done
else
    not_ok "dbus/org.entropy.Control1.service is built (run make)"
fi

for a in manage submit abort drain reload; do
    if grep -q "<action id=\"org.entropy.Control1.$a\">" "$policy"; then ok "polkit action org.entropy.Control1.$a"; else not_ok "polkit action org.entropy.Control1.$a"; fi
done
# The actions the daemon asks polkit about must all be declared (their ids are defined in
# daemon/bus-internal.h; any in a .c file count too).
actions=$(cat "$srcdir"/daemon/*.c "$srcdir"/daemon/*.h 2>/dev/null | grep -oE '"org\.entropy\.Control1\.[a-z]+"' | tr -d '"' | sort -u)
if [ -z "$actions" ]; then
    not_ok "the daemon's polkit action ids are found (none in daemon/*.c, daemon/*.h)"
fi
for a in $actions; do
    if grep -q "<action id=\"$a\">" "$policy"; then ok "daemon's polkit action $a is declared"; else not_ok "daemon's polkit action $a is declared"; fi
done
echo "1..$n"
[ "$failed" -eq 0 ]
