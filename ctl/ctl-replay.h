/* ctl-replay.h: `entropyctl replay FILE`: reads the results a worker has not delivered yet from its
 * replay buffer (<state-directory>/worker.db, schema in worker/replay.c) and builds the body of a
 * POST /reconnect for that worker, so that an operator can hand over the results of a worker that
 * will not come back. The file is only read: a worker that does come back replays them again and
 * gets "ACCEPTED" no-ops. */
#pragma once

#include <json-c/json.h>

#include "ctl.h"

/* worker_id may be NULL: it is then taken from the results themselves. */
int replay_file_to_reconnect(const char *path, const char *worker_id, json_object **ret, CtlError *e);
/* Prints the control plane's actions as a table. */
int replay_print_actions(const CtlSettings *s, json_object *resp);
