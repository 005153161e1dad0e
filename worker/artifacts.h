/* artifacts.h: a run's stdout and stderr. The child writes straight into
 * <state>/artifacts/<job_id>/<assignment_id>/stdout.tmp and stderr.tmp (files, not pipes, so the
 * output survives a worker crash and a full disk of one job cannot block the loop); when the run
 * is over they are fsynced, renamed to stdout and stderr, the directory is fsynced and their
 * SHA-256 computed. The rename rule the control plane checks: a final name is its tmp name
 * without the ".tmp" suffix, in the same directory, and only final names carry checksums.
 *
 * Backends: `local` keeps the files in the state directory (removed after log-retention);
 * `shared` also copies them, with the same tmp-then-rename rule, to
 * <shared-directory>/<job_id>/<assignment_id>/ (e.g. an NFS mount) and reports those paths. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "crypto.h"

typedef struct ArtifactStream {
        char *tmp_path;
        char *path;
        int fd;
        uint64_t size;
        char sha256[SHA256_HEX_SIZE];
} ArtifactStream;

typedef struct ArtifactSet {
        char *dir;
        ArtifactStream out, err;
        bool finalized;
        unsigned dirs_made; /* directories made for the run: their entries are fsynced with the files */
        /* What is reported: the shared copy's paths when the copy succeeded, else the local ones. */
        const char *backend;
        char *location;
        char *report_stdout, *report_stderr;
        const char *upload_state; /* "local", "uploaded", "failed" */
        char *upload_error;
} ArtifactSet;

/* Ids become path components: only [A-Za-z0-9._-], not starting with '.', at most 128 bytes. */
bool artifact_id_valid(const char *id);
/* The rename rule: tmp_path is path + ".tmp". */
bool artifact_names_valid(const char *path, const char *tmp_path);

/* Creates the run directory and empty tmp files, open for the child to inherit. */
int artifacts_open(const char *state_dir, const char *job_id, const char *assignment_id, ArtifactSet **ret);
ArtifactSet *artifacts_free(ArtifactSet *a);
/* Removes what artifacts_open() made, for a run that never started (NULL: nothing to do). */
void artifacts_discard(ArtifactSet *a);
/* Closes, fsyncs, renames, fsyncs the directory and hashes. Idempotent. */
int artifacts_finalize(ArtifactSet *a);
/* Copies the finalized files into <shared_dir>/<job_id>/<assignment_id>/; failure is recorded in
 * upload_state/upload_error (the local files stay the reported ones) and returned. */
int artifacts_publish_shared(ArtifactSet *a, const char *shared_dir, const char *job_id,
                             const char *assignment_id);
/* Adds the contract's artifact fields (artifact_id, stdout_path, ..., artifact_upload_error). */
void artifacts_add_json(const ArtifactSet *a, const char *artifact_id, json_object *o);

/* Removes run directories under <state>/artifacts last modified before cutoff (realtime usec),
 * except those for which keep() says so. Returns the number removed. */
int artifacts_cleanup(const char *state_dir, uint64_t cutoff, bool (*keep)(const char *job_id, void *userdata),
                      void *userdata);
