/* fuzz-reconnect.c: the POST /reconnect payload (current_job_id, completed_jobs[] of completion
 * and failure records) on a real Control, with a job assigned to the reconnecting worker so that
 * the records can reach the state machine. The input is the JSON body as sent. */
#include "fuzz.h"

#define FUZZ_RECONNECT 1
#include "fuzz-http-api.c"
