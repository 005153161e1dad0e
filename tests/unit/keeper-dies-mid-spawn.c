/* keeper-dies-mid-spawn.c: stands in for entropy-keeper in test-worker-executor. The first time
 * it runs, it reads one spawn request, starts a process the way entropy-keeper starts a job (the
 * worker's child by CLONE_PARENT, in a process group of its own), writes that process's pid to
 * $ENTROPY_TEST_MARKER and dies without replying: entropy-keeper killed in the middle of a spawn.
 * Started again (the marker exists), it becomes the real entropy-keeper, $ENTROPY_TEST_KEEPER. */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "keeper-protocol.h"

static int unreported_job(void *arg) {
        (void) arg;
        (void) setpgid(0, 0);
        execl("/bin/sleep", "sleep", "60", (char *) NULL);
        _exit(127);
}

int main(void) {
        static char stack[64 * 1024] __attribute__((aligned(16)));
        static char strings[KEEPER_REQUEST_MAX];
        const char *marker = getenv("ENTROPY_TEST_MARKER"), *real = getenv("ENTROPY_TEST_KEEPER");
        KeeperRequest req;
        FILE *f;
        pid_t pid;

        if (!marker || !real)
                return 2;
        if (access(marker, F_OK) == 0) {
                execl(real, "entropy-keeper", (char *) NULL);
                return 127;
        }
        /* read(), not recvmsg(): the job's descriptors that came along are closed by the kernel. */
        if (keeper_read_exact(KEEPER_SOCKET_FD, &req, sizeof(req)) < 0 || req.type != KEEPER_SPAWN ||
            req.size > sizeof(strings) || keeper_read_exact(KEEPER_SOCKET_FD, strings, req.size) < 0)
                return 1;
        pid = clone(unreported_job, stack + sizeof(stack), CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, NULL);
        if (pid < 0)
                return 1;
        f = fopen(marker, "we");
        if (!f)
                return 1;
        fprintf(f, "%d\n", (int) pid);
        fclose(f);
        _exit(0);
}
