/* auth.c: API tokens from files or systemd credentials, reloadable, compared in constant time. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "crypto.h"
#include "fs-util.h"
#include "log.h"
#include "macro.h"

/* A token shorter than this is easy to guess; warn (the operator may be testing). */
#define AUTH_TOKEN_MIN_RECOMMENDED 16

typedef enum AuthSlot {
        SLOT_ADMIN,
        SLOT_ADMIN_PREVIOUS,
        SLOT_WORKER,
        SLOT_WORKER_PREVIOUS,
        SLOT_METRICS,
        _SLOT_MAX,
} AuthSlot;

typedef struct SlotInfo {
        const char *option;     /* the setting naming its file */
        const char *credential; /* its name in $CREDENTIALS_DIRECTORY */
        const char *human;      /* for messages */
        bool required;
        unsigned role;
} SlotInfo;

static const SlotInfo slots[_SLOT_MAX] = {
        [SLOT_ADMIN] = {"admin-token-file", "admin-token", "admin", true, AUTH_ROLE_ADMIN | AUTH_ROLE_METRICS},
        [SLOT_ADMIN_PREVIOUS] = {"admin-token-previous-file", "admin-token-previous", "previous admin", false,
                                 AUTH_ROLE_ADMIN | AUTH_ROLE_METRICS},
        [SLOT_WORKER] = {"worker-token-file", "worker-token", "worker", true, AUTH_ROLE_WORKER},
        [SLOT_WORKER_PREVIOUS] = {"worker-token-previous-file", "worker-token-previous", "previous worker", false,
                                  AUTH_ROLE_WORKER},
        [SLOT_METRICS] = {"metrics-token-file", "metrics-token", "metrics", false, AUTH_ROLE_METRICS},
};

static const char *slot_file_setting(const ControlSettings *s, AuthSlot slot) {
        switch (slot) {
        case SLOT_ADMIN:
                return s->admin_token_file;
        case SLOT_ADMIN_PREVIOUS:
                return s->admin_token_previous_file;
        case SLOT_WORKER:
                return s->worker_token_file;
        case SLOT_WORKER_PREVIOUS:
                return s->worker_token_previous_file;
        case SLOT_METRICS:
                return s->metrics_token_file;
        default:
                return NULL;
        }
}

static char **slot_field(Control *c, AuthSlot slot) {
        char **fields[_SLOT_MAX] = {
                [SLOT_ADMIN] = &c->admin_token,     [SLOT_ADMIN_PREVIOUS] = &c->admin_token_previous,
                [SLOT_WORKER] = &c->worker_token,   [SLOT_WORKER_PREVIOUS] = &c->worker_token_previous,
                [SLOT_METRICS] = &c->metrics_token,
        };
        return fields[slot];
}

static const char *slot_token(const Control *c, AuthSlot slot) {
        return *slot_field((Control *) c, slot);
}

static void token_free(char *t) {
        if (!t)
                return;
        explicit_bzero(t, strlen(t));
        free(t);
}

static void tokens_free(char *t[_SLOT_MAX]) {
        for (size_t i = 0; i < _SLOT_MAX; i++)
                token_free(t[i]);
}

/* The path a slot's token comes from, or NULL when nothing provides it. */
static int slot_path(const ControlSettings *s, AuthSlot slot, char **ret) {
        const char *file = slot_file_setting(s, slot), *creds;
        char *p;

        if (!isempty(file)) {
                p = strdup(file);
                if (!p)
                        return -ENOMEM;
                *ret = p;
                return 0;
        }
        creds = getenv("CREDENTIALS_DIRECTORY");
        if (isempty(creds) || asprintf(&p, "%s/%s", creds, slots[slot].credential) < 0) {
                *ret = NULL;
                return isempty(creds) ? 0 : -ENOMEM;
        }
        if (access(p, F_OK) < 0) {
                free(p);
                p = NULL;
        }
        *ret = p;
        return 0;
}

static int slot_read(const ControlSettings *s, AuthSlot slot, char **ret) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = slot_path(s, slot, &path);
        if (r < 0)
                return log_oom();
        if (!path) {
                *ret = NULL;
                if (slots[slot].required)
                        return log_error_errno(-ENOKEY, "No %s token: set --%s (or the credential '%s').",
                                               slots[slot].human, slots[slot].option, slots[slot].credential);
                return 0;
        }
        r = read_secret_file(path, ret);
        if (r == -ENODATA)
                return log_error_errno(r, "Token file %s (--%s) is empty.", path, slots[slot].option);
        if (r < 0)
                return log_error_errno(r, "Failed to read token file %s (--%s): %m", path, slots[slot].option);
        if (strlen(*ret) < AUTH_TOKEN_MIN_RECOMMENDED)
                log_warning("The token in %s (--%s) is shorter than %d characters; use a long random one.", path,
                            slots[slot].option, AUTH_TOKEN_MIN_RECOMMENDED);
        return 0;
}

/* A token shared by two roles would let one open the other's endpoints. */
static int tokens_check_distinct(char *t[_SLOT_MAX]) {
        for (size_t i = 0; i < _SLOT_MAX; i++)
                for (size_t j = i + 1; j < _SLOT_MAX; j++)
                        if (t[i] && t[j] && (slots[i].role & slots[j].role) == 0 && streq(t[i], t[j]))
                                return log_error_errno(-EINVAL,
                                                       "The tokens of --%s and --%s are the same; each role "
                                                       "needs its own token.",
                                                       slots[i].option, slots[j].option);
        return 0;
}

int auth_load(Control *c) {
        char *t[_SLOT_MAX] = {};
        int r;

        for (AuthSlot i = 0; i < _SLOT_MAX; i++) {
                r = slot_read(&c->settings, i, &t[i]);
                if (r < 0)
                        goto fail;
        }
        r = tokens_check_distinct(t);
        if (r < 0)
                goto fail;
        for (AuthSlot i = 0; i < _SLOT_MAX; i++) {
                char **f = slot_field(c, i);
                token_free(*f);
                *f = t[i];
        }
        return 0;
fail:
        tokens_free(t);
        return r;
}

unsigned auth_token_roles(const Control *c, const char *token) {
        unsigned roles = 0;

        if (isempty(token))
                return 0;
        /* Every slot is compared, whatever matched before, so timing tells nothing. */
        for (AuthSlot i = 0; i < _SLOT_MAX; i++) {
                const char *t = slot_token(c, i);
                if (t && streq_consttime(t, token))
                        roles |= slots[i].role;
        }
        return roles;
}

void auth_clear(Control *c) {
        for (AuthSlot i = 0; i < _SLOT_MAX; i++) {
                char **f = slot_field(c, i);
                token_free(*f);
                *f = NULL;
        }
}
