/* finisher.h: makes finished runs' artifacts durable on a thread of their own.
 *
 * Finalizing a run's artifacts is three fsyncs (both files, then their directory; see
 * artifacts.h) and, with the shared backend, a copy. Done on the event loop, they held up the
 * next job: its claim's answer and its ack waited behind them. The finisher does them on one
 * background thread, in order, and calls back on the event loop when each set is done. The
 * ArtifactSet belongs to the thread from finisher_submit() until its callback.
 *
 * The local part has no deadline: until the files are durable and hashed there is no result to
 * report, only one to lose. The shared copy has one (copy_timeout, plus a second per 8 MiB of
 * output): past it the local files are reported, with upload_state "failed" and the reason, and
 * while that copy hangs on, later runs' copies are not tried (they fail the same way at once). */
#pragma once

#include <systemd/sd-event.h>

#include "artifacts.h"
#include "macro.h"
#include "time-util.h"

typedef struct Finisher Finisher;
/* result: what artifacts_finalize() returned (the shared copy's failure is in the set's
 * upload_state/upload_error, as artifacts_publish_shared() leaves it). */
typedef void (*finisher_done_t)(void *userdata, int result);

int finisher_new(sd_event *event, Finisher **ret);
/* Waits for the set being finalized, if any; the callbacks of sets not done are never called. */
Finisher *finisher_free(Finisher *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(Finisher *, finisher_free);

/* shared_dir NULL: the local backend only. Strings are copied. */
int finisher_submit(Finisher *f, ArtifactSet *a, const char *shared_dir, const char *job_id, const char *assignment_id,
                    usec_t copy_timeout, finisher_done_t done, void *userdata);
