/* keeper-protocol.h: what entropy-worker and its entropy-keeper process say to each other over
 * their socket pair (a byte stream, blocking on both ends, read in order).
 *
 * Every message starts with a KeeperRequest, of keeper_request_size(version) bytes.
 *   KEEPER_SPAWN: two or three descriptors attached (SCM_RIGHTS: the job's stdout and stderr;
 *     since version 4, optionally the cgroup.procs of the job's cgroup, open for writing, which
 *     the job's process enters before anything else), then `size` bytes of NUL-terminated
 *     strings: the executable's path, the working directory ("" for none), n_argv arguments and
 *     n_env environment entries. Answered by a KeeperReply.
 *   KEEPER_FORGET: the job led by `pid` has ended and its group is killed; not answered.
 *   KEEPER_ADOPT: a job entropy-keeper did not start (an earlier entropy-keeper did) is running
 *     in group `pid`: guard it like its own; not answered.
 *
 * Versions. 3 added rlimit_fsize at the end of the header; 4 the job's cgroup (a third
 * descriptor, in a version 4 request only); entropy-keeper still takes version 2 requests (no
 * limit, no cgroup). The worker starts entropy-keeper again from the program it
 * opened at its own start, so the two normally come from one build; when they do not (a new
 * worker beside an older entropy-keeper), that entropy-keeper refuses a version 3 request the way
 * every entropy-keeper before it refused any bad request, by exiting with KEEPER_EXIT_VERSION,
 * and the worker speaks the version before to the ones it starts from then on. (A version 3
 * entropy-keeper checks the descriptors before the version: it refuses a request with three as a
 * bad request, and the worker does not step down. The worker starts entropy-keeper from the file
 * it opened at its own start, so the two differ only if that file was replaced in between.) */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#define KEEPER_PROTOCOL_VERSION     4U
#define KEEPER_PROTOCOL_VERSION_MIN 2U
/* entropy-keeper's exit status for a request of a version it does not speak (before version 3:
 * for any bad request), and for any other bad request. */
#define KEEPER_EXIT_VERSION     1
#define KEEPER_EXIT_BAD_REQUEST 3
/* execve() itself refuses much less: arguments and environment share a quarter of the stack
 * limit, 2 MiB by default. */
#define KEEPER_REQUEST_MAX      (8U * 1024U * 1024U)
#define KEEPER_SPAWN_FDS        2 /* stdout, stderr: always */
#define KEEPER_SPAWN_FDS_MAX    3 /* and the job's cgroup (version 4) */
/* Where entropy-keeper finds its end of the socket pair. */
#define KEEPER_SOCKET_FD        3

typedef enum KeeperRequestType {
        KEEPER_SPAWN = 1,
        KEEPER_FORGET,
        KEEPER_ADOPT,
} KeeperRequestType;

typedef struct KeeperRequest {
        uint32_t version;
        uint32_t type;
        uint32_t size; /* KEEPER_SPAWN: bytes of strings that follow */
        uint32_t n_argv;
        uint32_t n_env;
        int32_t pid; /* KEEPER_SPAWN: the worker (the job's parent); otherwise the job's group */
        /* Since version 3. KEEPER_SPAWN: RLIMIT_FSIZE of the job (soft and hard, never above
         * entropy-keeper's own), the largest file it may write, its stdout and stderr among them;
         * 0: entropy-keeper's own. */
        uint64_t rlimit_fsize;
} KeeperRequest;

/* The header's size in a request of that version. */
static inline size_t keeper_request_size(uint32_t version) {
        return version >= 3 ? sizeof(KeeperRequest) : offsetof(KeeperRequest, rlimit_fsize);
}

/* The process groups of the running jobs. Both ends keep them: entropy-keeper to kill them when
 * the worker dies, the worker to hand them to an entropy-keeper started again. */
typedef struct KeeperGroups {
        pid_t *pgids;
        size_t n, allocated;
} KeeperGroups;

static inline int keeper_groups_add(KeeperGroups *g, pid_t pgid) {
        if (g->n == g->allocated) {
                size_t n = g->allocated ? g->allocated * 2 : 8;
                pid_t *p = realloc(g->pgids, n * sizeof(pid_t));
                if (!p)
                        return -ENOMEM;
                g->pgids = p;
                g->allocated = n;
        }
        g->pgids[g->n++] = pgid;
        return 0;
}

/* The index of pgid in g, or g->n when it is not there. */
static inline size_t keeper_groups_find(const KeeperGroups *g, pid_t pgid) {
        size_t i = 0;
        while (i < g->n && g->pgids[i] != pgid)
                i++;
        return i;
}

static inline bool keeper_groups_contain(const KeeperGroups *g, pid_t pgid) {
        return keeper_groups_find(g, pgid) < g->n;
}

/* Whether it was there. */
static inline bool keeper_groups_remove(KeeperGroups *g, pid_t pgid) {
        size_t i = keeper_groups_find(g, pgid);
        if (i == g->n)
                return false;
        g->pgids[i] = g->pgids[--g->n];
        return true;
}

/* Reads exactly size bytes (both ends block). -EPIPE at EOF: the other end is gone. */
static inline int keeper_read_exact(int fd, void *buf, size_t size) {
        for (size_t done = 0; done < size;) {
                ssize_t k = read(fd, (char *) buf + done, size - done);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EPIPE;
                done += (size_t) k;
        }
        return 0;
}

/* The steps a job's start can fail at. */
enum {
        KEEPER_STEP_SETPGID,
        KEEPER_STEP_PRCTL,
        KEEPER_STEP_STDIO,
        KEEPER_STEP_CHDIR,
        KEEPER_STEP_EXECVE,
        KEEPER_STEP_SIGMASK,
        KEEPER_STEP_FORK,
        KEEPER_STEP_REQUEST, /* entropy-keeper refused the request itself */
        KEEPER_STEP_RLIMIT,  /* since version 3 */
        KEEPER_STEP_CGROUP,  /* since version 4 */
        _KEEPER_STEP_MAX,
};

typedef struct KeeperReply {
        int32_t error; /* positive errno, 0 when the job's exec succeeded */
        int32_t step;  /* the step that failed, when error != 0 */
        int32_t pid;   /* the job (the worker's child), also when its exec failed: reap it */
} KeeperReply;
