/* ctl-backup.h: `entropyctl backup FILE`: a consistent copy of the control plane's database, made
 * while it runs (or not), for an operator to keep and to restore from (entropy-control(8)).
 *
 * The copy is one read transaction of the database (VACUUM INTO): in WAL mode it sees one commit
 * and does not hold up the control plane's writes. It goes to a new file beside FILE, is fsynced,
 * renamed to FILE (never over an existing one) and its directory fsynced, then opened again and
 * checked (PRAGMA quick_check) before it is reported. */
#pragma once

#include <json-c/json.h>

#include "ctl.h"

#define BACKUP_DEFAULT_DATABASE "/var/lib/entropy/control.db"

/* On success *ret describes the copy: path, bytes, schema_version, jobs, audit_events. */
int backup_database(const char *database, const char *path, json_object **ret, CtlError *e);
