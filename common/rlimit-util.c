/* rlimit-util.c: the soft limit on open descriptors, raised and given back (see rlimit-util.h). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/resource.h>

#include "rlimit-util.h"

/* The limits the process started with; valid once saved. */
static struct rlimit saved;
static bool have_saved;

int rlimit_nofile_bump(void) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (!have_saved) {
                saved = rl;
                have_saved = true;
        }
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        return -errno;
        }
        return rl.rlim_cur > (rlim_t) 0x7fffffff ? 0x7fffffff : (int) rl.rlim_cur;
}

/* Only the soft limit goes back: the hard one was never changed, and a program that needs more
 * may raise it again, as we did. prlimit() of pid 0 is this process. */
int rlimit_nofile_give_back(pid_t pid) {
        struct rlimit now;

        if (!have_saved)
                return 0;
        if (prlimit(pid, RLIMIT_NOFILE, NULL, &now) < 0)
                return -errno;
        if (now.rlim_cur <= saved.rlim_cur)
                return 0;
        now.rlim_cur = saved.rlim_cur;
        return prlimit(pid, RLIMIT_NOFILE, &now, NULL) < 0 ? -errno : 0;
}
