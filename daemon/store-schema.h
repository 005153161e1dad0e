/* store-schema.h: the versioned schema of the control plane's database and its forward
 * migrations, one per version, each applied in its own transaction. */
#pragma once

#include <sqlite3.h>

/* The schema version this program writes. A database with a newer user_version is refused. */
#define STORE_SCHEMA_VERSION 14

/* Migrates db from its user_version up to target (<= STORE_SCHEMA_VERSION). Tests use a target
 * below the current version to build databases as older releases left them. */
int store_schema_migrate(sqlite3 *db, int target);
