/* worker-main.c: entropy-worker's main(): signal mask, libcurl's global state, the Worker. */
#include <curl/curl.h>
#include <signal.h>
#include <stdlib.h>

#include "log.h"
#include "rlimit-util.h"
#include "worker.h"

int main(int argc, char **argv) {
        Worker *w = NULL;
        sigset_t mask;
        int r;

        log_set_ident("entropy-worker");
        /* sd-event takes these through signalfd and pidfd/waitid: they must not be delivered. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return EXIT_FAILURE;
        (void) signal(SIGPIPE, SIG_IGN);
        /* Past a file size limit (LimitFSIZE=) a write fails with EFBIG, which the replay buffer
         * survives (run.c holds the result), rather than killing the worker and its jobs. */
        (void) signal(SIGXFSZ, SIG_IGN);
        /* Each run holds a few descriptors until its result is recorded: many slots pass the default
         * soft limit of 1024. Jobs start with the limit the worker was given (executor.c). */
        r = rlimit_nofile_bump();
        if (r < 0)
                log_warning_errno(r, "Cannot raise the limit on open files: %m");
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                log_error("Cannot initialize libcurl.");
                return EXIT_FAILURE;
        }
        r = worker_new(argc, argv, &w);
        if (r != 0) {
                curl_global_cleanup();
                return r > 0 ? EXIT_SUCCESS : EXIT_FAILURE;
        }
        r = worker_run(w);
        worker_free(w);
        curl_global_cleanup();
        return r < 0 ? EXIT_FAILURE : r;
}
