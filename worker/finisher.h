/* finisher.h: makes finished runs' artifacts durable on a thread of their own.
 *
 * Finalizing a run's artifacts is three fsyncs (both files, then their directory; see
 * artifacts.h) and, with the shared backend, a copy. Done on the event loop, they held up the
 * next job: its claim's answer and its ack waited behind them. The finisher does them on one
 * background thread, in order, and calls back on the event loop when each set is done. The
 * ArtifactSet belongs to the thread from finisher_submit() until its callback. */
#pragma once

#include <systemd/sd-event.h>

#include "artifacts.h"
#include "macro.h"

typedef struct Finisher Finisher;
/* result: what artifacts_finalize() returned (the shared copy's failure is in the set's
 * upload_state/upload_error, as artifacts_publish_shared() leaves it). */
typedef void (*finisher_done_t)(void *userdata, int result);

int finisher_new(sd_event *event, Finisher **ret);
/* Waits for the set being finalized, if any; the callbacks of sets not done are never called. */
Finisher *finisher_free(Finisher *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(Finisher *, finisher_free);

/* shared_dir NULL: the local backend only. Strings are copied. */
int finisher_submit(Finisher *f, ArtifactSet *a, const char *shared_dir, const char *job_id,
                    const char *assignment_id, finisher_done_t done, void *userdata);
