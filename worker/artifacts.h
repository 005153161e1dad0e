/* artifacts.h: a run's stdout and stderr. The child writes straight into
 * <state>/artifacts/<job_id>/<assignment_id>/stdout.tmp and stderr.tmp (files, not pipes, so the
 * output survives a worker crash and a full disk of one job cannot block the loop); when the run
 * is over they are fsynced, renamed to stdout and stderr, the directory is fsynced and their
 * SHA-256 computed. The rename rule the control plane checks: a final name is its tmp name
 * without the ".tmp" suffix, in the same directory, and only final names carry checksums.
 *
 * Backends: `local` keeps the files in the state directory (removed after log-retention);
 * `shared` also copies them, with the same tmp-then-rename rule, to
 * <shared-directory>/<job_id>/<assignment_id>/ (e.g. an NFS mount) and reports those paths.
 *
 * Output limit (max-output-size): the job runs under an RLIMIT_FSIZE one byte past max_size
 * (executor.h), so a file larger than max_size shows that it tried to write more, and neither
 * file can grow much past it. Such a stream, and whatever the limit did not stop (a job that
 * could raise it, an entropy-keeper too old to set it), is cut to max_size when the set is
 * finalized, before it is hashed or copied: a file's size, however sparse, is what that costs, and
 * a terabyte of holes made by one ftruncate() would take hours. The run then fails. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "crypto.h"

typedef struct ArtifactStream {
        char *tmp_path;
        char *path;
        int fd;
        dev_t dev; /* the file the worker made and gave the job: path must still name it */
        ino_t ino;
        uint64_t size;
        uint64_t cut_from; /* its size when it was found past max_size and cut to it; 0: not cut */
        char sha256[SHA256_HEX_SIZE];
} ArtifactStream;

typedef struct ArtifactSet {
        char *dir;
        ArtifactStream out, err;
        uint64_t max_size; /* max-output-size the job started with, for each stream; 0: none */
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
/* Closes, fsyncs, renames, fsyncs the directory and hashes; a stream past max_size is cut to it
 * first (cut_from). Idempotent. -ESTALE when an output's name no longer leads to the file the
 * worker made (the job put a symbolic link or another file there): nothing is reported. */
int artifacts_finalize(ArtifactSet *a);
/* The text for a failure of artifacts_finalize() or of the shared copy. */
const char *artifacts_strerror(int r);
/* Whether a finalized run fails for its output limit: 1, with the reason in buf, when a stream was
 * cut to max_size, whatever the job made of the failed write (SIGXFSZ kills it; a job that ignores
 * SIGXFSZ, as Python does, gets EFBIG and may go on, even exit 0); or when the job was killed by
 * SIGXFSZ (sigxfsz) while max_size was set (a truncate(), a write past a seek, or another file
 * went past the limit). how, the job's end as the result words it ("exited with status 0 after
 * 0.200s"; NULL: not said), ends the reason. 0 (buf untouched) otherwise. */
int artifacts_output_limit_error(const ArtifactSet *a, bool sigxfsz, const char *how, char *buf, size_t size);
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
