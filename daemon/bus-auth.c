/* bus-auth.c: who may call what on org.entropy.Control1.
 *
 *   read (List*, Get*, properties of job and worker objects):
 *       root, the daemon's own user, members of the read group ("entropy") or the admin group
 *   change (SubmitJob, Abort*, Drain/Resume, Reconcile, ReloadTokens, Replay):
 *       root, the daemon's own user and members of the admin group ("entropy-admin"), whether
 *       or not polkit runs; otherwise polkit's verdict on the method's action
 *       (org.entropy.Control1.submit, ...), and a refusal when polkit is not on the bus.
 *
 * The caller's uid and groups come from the bus broker (GetConnectionCredentials: the effective
 * uid of the connecting process, from SO_PEERCRED), never from /proc, which a caller could race by
 * exiting and having its pid reused (that is what SD_BUS_CREDS_AUGMENT would read). When the
 * broker does not report supplementary groups at all (dbus-daemon 1.14 does not), they are
 * resolved from the user database for that uid, as polkit's unix-group rules are; an empty list
 * it reports (dbus-broker, for a process that dropped its groups) is taken as it is.
 *
 * polkit is asked asynchronously, since it may wait for an authentication agent: the method
 * handler returns without replying, and when polkit answers the request is put back into the
 * connection's read queue (sd_bus_enqueue_for_read) to be dispatched again with the verdict at
 * hand. Every refusal is answered with org.entropy.Control1.Error.AccessDenied and audited. */
#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "audit.h"
#include "bus-internal.h"
#include "log.h"

#define POLKIT_NAME      "org.freedesktop.PolicyKit1"
#define POLKIT_PATH      "/org/freedesktop/PolicyKit1/Authority"
#define POLKIT_INTERFACE "org.freedesktop.PolicyKit1.Authority"
#define MAX_GROUPS       1024

typedef enum PolkitVerdict {
        POLKIT_PENDING,
        POLKIT_ALLOWED,
        POLKIT_DENIED,
        POLKIT_ABSENT, /* no polkit on this bus: fall back to the admin group */
        POLKIT_ERROR,
} PolkitVerdict;

struct PolkitQuery {
        PolkitQuery *next;
        Bus *bus;
        sd_bus_message *request;
        sd_bus_slot *slot;
        char *action;
        PolkitVerdict verdict;
        char *error_message;
};

typedef struct Caller {
        uid_t uid;
        gid_t gids[MAX_GROUPS];
        int n_gids;
        const char *sender;
} Caller;

static PolkitQuery *polkit_query_free(PolkitQuery *q) {
        if (!q)
                return NULL;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        free(q->action);
        free(q->error_message);
        free(q);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(PolkitQuery *, polkit_query_free);

static void polkit_query_unlink(Bus *b, PolkitQuery *q) {
        for (PolkitQuery **p = &b->polkit_queries; *p; p = &(*p)->next)
                if (*p == q) {
                        *p = q->next;
                        return;
                }
}

static void call_id_clear(BusCallId *id) {
        free(id->sender);
        *id = (BusCallId){};
}

static bool call_id_is(const BusCallId *id, sd_bus_message *m) {
        uint64_t cookie;

        return id->sender && sd_bus_message_get_cookie(m, &cookie) >= 0 && cookie == id->cookie &&
               streq_ptr(id->sender, sd_bus_message_get_sender(m));
}

/* Best effort: a call that cannot be remembered is checked again when asked again. */
static void call_id_set(BusCallId *id, sd_bus_message *m) {
        const char *sender = sd_bus_message_get_sender(m);
        uint64_t cookie;

        call_id_clear(id);
        if (!sender || sd_bus_message_get_cookie(m, &cookie) < 0)
                return;
        id->sender = strdup(sender);
        id->cookie = cookie;
}

void bus_auth_free(Bus *b) {
        call_id_clear(&b->read_authorized);
        call_id_clear(&b->identified);
        while (b->polkit_queries) {
                PolkitQuery *q = b->polkit_queries;
                b->polkit_queries = q->next;
                polkit_query_free(q);
        }
}

/* The uid the last authorization found for m: each lookup is a round trip to the broker. */
static void caller_remember(Bus *b, sd_bus_message *m, uid_t uid) {
        call_id_set(&b->identified, m);
        b->identified_uid = uid;
}

const char *bus_actor(Bus *b, sd_bus_message *m, char *buf, size_t size) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid;

        if (call_id_is(&b->identified, m))
                snprintf(buf, size, "dbus:%u", (unsigned) b->identified_uid);
        else if (sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds) >= 0 &&
                 sd_bus_creds_get_euid(creds, &uid) >= 0)
                snprintf(buf, size, "dbus:%u", (unsigned) uid);
        else
                snprintf(buf, size, "dbus:%s", strna(sd_bus_message_get_sender(m)));
        return buf;
}

/* Supplementary groups of a uid from the user database, plus its primary group. */
static int groups_from_nss(uid_t uid, Caller *caller) {
        struct passwd pw, *result = NULL;
        char buf[4096];
        int n = MAX_GROUPS - caller->n_gids;

        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &result) != 0 || !result)
                return 0; /* a uid without a name has only what the broker said */
        if (getgrouplist(pw.pw_name, pw.pw_gid, caller->gids + caller->n_gids, &n) < 0)
                return -E2BIG;
        caller->n_gids += n;
        return 0;
}

static int caller_identify(sd_bus_message *m, Caller *ret) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        const gid_t *gids = NULL;
        int n, r;

        *ret = (Caller){.sender = sd_bus_message_get_sender(m)};
        /* The broker reports the uid it took from SO_PEERCRED when the caller connected, which
         * is the effective uid: sd-bus files it under EUID (asking for UID gets nothing). */
        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_SUPPLEMENTARY_GIDS, &creds);
        if (r < 0)
                return r;
        r = sd_bus_creds_get_euid(creds, &ret->uid);
        if (r < 0)
                return r;
        n = sd_bus_creds_get_supplementary_gids(creds, &gids);
        if (n == -ENODATA) /* not reported */
                return groups_from_nss(ret->uid, ret);
        if (n < 0)
                return n;
        /* An empty list is a caller that dropped its supplementary groups: the user database
         * must not give them back. */
        n = MIN(n, MAX_GROUPS);
        if (n > 0)
                memcpy(ret->gids, gids, sizeof(gid_t) * (size_t) n);
        ret->n_gids = n;
        /* The broker's list has no primary group; the user database has it. */
        struct passwd pw, *result = NULL;
        char buf[4096];
        if (getpwuid_r(ret->uid, &pw, buf, sizeof(buf), &result) == 0 && result && ret->n_gids < MAX_GROUPS)
                ret->gids[ret->n_gids++] = pw.pw_gid;
        return 0;
}

static bool caller_in_group(const Caller *caller, const char *group) {
        struct group gr, *result = NULL;
        char buf[16384];

        if (isempty(group))
                return false;
        if (getgrnam_r(group, &gr, buf, sizeof(buf), &result) != 0 || !result)
                return false; /* a group that does not exist has no members */
        for (int i = 0; i < caller->n_gids; i++)
                if (caller->gids[i] == gr.gr_gid)
                        return true;
        return false;
}

static bool caller_is_privileged(const Caller *caller) {
        return caller->uid == 0 || caller->uid == geteuid();
}

static int refuse(Bus *b, sd_bus_message *m, const Caller *caller, sd_bus_error *error, const char *what,
                  const char *reason) {
        char who[64];
        int r;

        snprintf(who, sizeof(who), "uid:%u", (unsigned) caller->uid);
        log_notice("D-Bus: refused %s.%s from %s (%s): %s", strna(sd_bus_message_get_interface(m)),
                   strna(sd_bus_message_get_member(m)), who, strna(caller->sender), reason);
        /* Best effort: an audit failure must not turn a refusal into an internal error. */
        r = audit_refused(b->c, what, who, strna(caller->sender), NULL, reason);
        if (r < 0)
                log_warning_errno(r, "Failed to audit a refused D-Bus call from %s: %m", who);
        return sd_bus_error_setf(error, BUS_ERROR_ACCESS_DENIED, "Access denied: %s", reason);
}

int bus_authorize_read(Bus *b, sd_bus_message *m, sd_bus_error *error) {
        Caller caller;
        int r;

        if (!m || b->emitting) /* our own PropertiesChanged or InterfacesAdded: no caller to check */
                return 1;
        if (call_id_is(&b->read_authorized, m))
                return 1;
        r = caller_identify(m, &caller);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot identify the caller: %s", strerror(-r));
        if (caller_is_privileged(&caller) || caller_in_group(&caller, b->read_group) ||
            caller_in_group(&caller, b->admin_group)) {
                call_id_set(&b->read_authorized, m);
                return 1;
        }
        return refuse(b, m, &caller, error, "dbus-read", "reading needs membership in the read group");
}

/* Takes m's query off the list: m is back with polkit's verdict. NULL when m has none. */
static PolkitQuery *polkit_query_take(Bus *b, sd_bus_message *m) {
        for (PolkitQuery **p = &b->polkit_queries; *p; p = &(*p)->next)
                if ((*p)->request == m) {
                        PolkitQuery *q = *p;
                        *p = q->next;
                        q->next = NULL;
                        return q;
                }
        return NULL;
}

static size_t polkit_queries_pending(const Bus *b) {
        size_t n = 0;

        for (const PolkitQuery *q = b->polkit_queries; q; q = q->next)
                n++;
        return n;
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int authorized = 0, challenge = 0, r;

        q->slot = sd_bus_slot_unref(q->slot);
        if (e) {
                if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                        q->verdict = POLKIT_ABSENT;
                else {
                        q->verdict = POLKIT_ERROR;
                        q->error_message = strdup(strna(e->message));
                }
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                q->verdict = r < 0 ? POLKIT_ERROR : authorized ? POLKIT_ALLOWED : POLKIT_DENIED;
        }
        /* Dispatch the original call again; it will find this verdict. */
        r = sd_bus_enqueue_for_read(sd_bus_message_get_bus(q->request), q->request);
        if (r < 0) {
                log_error_errno(r, "Failed to re-dispatch a D-Bus call after polkit answered: %m");
                polkit_query_unlink(q->bus, q);
                polkit_query_free(q);
        }
        return 1;
}

static int polkit_query_start(Bus *b, sd_bus_message *m, const char *action) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        PolkitQuery *q;
        uint32_t flags = sd_bus_message_get_allow_interactive_authorization(m) > 0 ? 1 : 0;
        int r;

        r = sd_bus_message_new_method_call(sd_bus_message_get_bus(m), &call, POLKIT_NAME, POLKIT_PATH, POLKIT_INTERFACE,
                                           "CheckAuthorization");
        if (r < 0)
                return r;
        r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                  sd_bus_message_get_sender(m), action, 0, flags, "");
        if (r < 0)
                return r;
        q = calloc(1, sizeof(PolkitQuery));
        if (!q)
                return -ENOMEM;
        q->bus = b;
        q->request = sd_bus_message_ref(m);
        q->verdict = POLKIT_PENDING;
        q->action = strdup(action);
        if (!q->action) {
                polkit_query_free(q);
                return -ENOMEM;
        }
        /* The bus's default timeout (25 s), as systemd's own polkit checks: the caller has given
         * up by then (busctl and entropyctl wait as long), and a polkit that never answers must
         * not hold the query and the caller's message for ever. */
        r = sd_bus_call_async(sd_bus_message_get_bus(m), &q->slot, call, on_polkit_reply, q, 0);
        if (r < 0) {
                polkit_query_free(q);
                return r;
        }
        q->next = b->polkit_queries;
        b->polkit_queries = q;
        return 0;
}

int bus_authorize_manage(Bus *b, sd_bus_message *m, const char *action, sd_bus_error *error) {
        _cleanup_(polkit_query_freep) PolkitQuery *q = NULL;
        Caller caller;
        int r;

        /* Off the list before anything can fail: the query holds the whole call (an unprivileged
         * caller's SubmitJob may be megabytes), so every way out of here must free it, and a
         * caller that left while polkit was deciding is no longer there to be identified. */
        q = polkit_query_take(b, m);
        if (q)
                log_debug("D-Bus: polkit answered about %s for %s; %zu other polkit checks pending.", q->action,
                          strna(sd_bus_message_get_sender(m)), polkit_queries_pending(b));
        r = caller_identify(m, &caller);
        if (r < 0)
                return sd_bus_error_set_errnof(error, r, "Cannot identify the caller: %s", strerror(-r));
        caller_remember(b, m, caller.uid);
        /* The admin group is the packaged way to grant changes (sysusers.d makes it): it must
         * not depend on whether polkit, whose default for these actions is auth_admin, runs. */
        if (caller_is_privileged(&caller) || caller_in_group(&caller, b->admin_group))
                return 1;

        if (!q) {
                r = polkit_query_start(b, m, action);
                if (r < 0)
                        return sd_bus_error_set_errnof(error, r, "Cannot ask polkit: %s", strerror(-r));
                return 0;
        }
        assert(q->verdict != POLKIT_PENDING); /* the call comes back only once polkit answered */

        switch (q->verdict) {
        case POLKIT_ALLOWED:
                return 1;
        case POLKIT_ABSENT:
                return refuse(b, m, &caller, error, "dbus-manage", "changes need root or the admin group");
        case POLKIT_DENIED:
                return refuse(b, m, &caller, error, "dbus-manage", "not authorized by polkit");
        default:
                log_warning("polkit failed to answer for %s: %s", action, strna(q->error_message));
                return refuse(b, m, &caller, error, "dbus-manage", "polkit could not decide");
        }
}
