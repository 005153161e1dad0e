/* auth.h: the control plane's API tokens: loading them (token files or systemd credentials),
 * reloading them on SIGHUP, and telling which roles a presented token opens. Tokens are never
 * logged, and are wiped from memory when replaced. */
#pragma once

#include "control.h"

typedef enum AuthRole {
        AUTH_ROLE_ADMIN = 1 << 0,
        AUTH_ROLE_WORKER = 1 << 1,
        AUTH_ROLE_METRICS = 1 << 2,
} AuthRole;

/* Reads every configured token into c (admin and worker required; previous and metrics tokens
 * optional). A file option that is set wins; without it, the credential of the same name in
 * $CREDENTIALS_DIRECTORY (admin-token, admin-token-previous, worker-token,
 * worker-token-previous, metrics-token) is used. All or nothing: on failure c keeps the tokens
 * it had, and the error (naming the option) is logged. */
int auth_load(Control *c);
/* The roles (AuthRole bits) token opens, compared in constant time against every loaded token:
 * current and previous admin, current and previous worker, metrics. 0 for NULL or unknown. */
unsigned auth_token_roles(const Control *c, const char *token);
/* Wipes and frees the tokens held in c. */
void auth_clear(Control *c);
