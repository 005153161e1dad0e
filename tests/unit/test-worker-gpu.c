/* test-worker-gpu.c: GPU detection: /dev/nvidia<N> nodes, else the --nvidia-smi program asked
 * with -L (never another one), run with the signal state a program expects; the slot map. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu.h"
#include "macro.h"
#include "strv.h"
#include "tap.h"

static char dir[] = "/tmp/entropy-test-gpu-XXXXXX";

static char *path(const char *rel) {
        static char buf[4][PATH_MAX];
        static int i;
        i = (i + 1) % 4;
        snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, rel);
        return buf[i];
}

static void write_script(const char *p, const char *body) {
        FILE *f = fopen(p, "we");
        if (!f || fprintf(f, "#!/bin/sh\n%s", body) < 0 || fclose(f) != 0 || chmod(p, 0755) < 0)
                tap_bail("cannot write %s", p);
}

static char *detect(const char *dev_dir, const char *nvidia_smi) {
        _cleanup_strv_free_ char **l = NULL;
        if (gpu_detect(NULL, dev_dir, nvidia_smi, &l) < 0)
                return strdup("(error)");
        return strv_join(l, ",");
}

static void test_the_configured_nvidia_smi_is_asked(void) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        write_script(path("my-nvidia-smi"), "[ \"$1\" = -L ] || exit 1\n"
                                            "echo 'GPU 0: Test GPU (UUID: GPU-0)'\necho 'GPU 1: Test GPU (UUID: GPU-1)'\n");
        a = detect(path("dev-empty"), path("my-nvidia-smi"));
        is_str(a, "0,1", "no device node: the --nvidia-smi program is asked");
        b = detect(path("dev-empty"), "");
        is_str(b, "", "--nvidia-smi empty: no program is asked, no GPU");
        c = detect(path("dev-empty"), path("missing-nvidia-smi"));
        is_str(c, "", "a --nvidia-smi that does not exist: no GPU");
        d = detect(path("dev-one"), path("my-nvidia-smi"));
        is_str(d, "3", "device nodes win over the program");
}

/* The worker blocks SIGTERM, SIGINT, SIGHUP and SIGCHLD and ignores SIGPIPE: none of it may reach
 * the program. The fake reports a GPU only when its signal state is clean (in signals 1 to 31:
 * whatever started this test may have left real-time ones, which libc keeps for itself, ignored). */
static void test_the_program_runs_with_a_clean_signal_state(void) {
        _cleanup_free_ char *got = NULL, *seen = NULL;
        sigset_t mask, old;
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
        char body[1024];

        snprintf(body, sizeof(body),
                 "blk=$(sed -n 's/^SigBlk:[[:space:]]*//p' /proc/$$/status)\n"
                 "ign=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status)\n"
                 "echo \"blocked $blk ignored $ign\" > %s\n"
                 "[ $((0x$blk & 0x7fffffff)) = 0 ] && [ $((0x$ign & 0x7fffffff)) = 0 ] && echo 'GPU 0: clean'\n"
                 "exit 0\n",
                 path("seen"));
        write_script(path("sig-nvidia-smi"), body);
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, &old) < 0 || sigaction(SIGPIPE, &ign, &old_pipe) < 0)
                tap_bail("signal set-up");
        got = detect(path("dev-empty"), path("sig-nvidia-smi"));
        (void) sigprocmask(SIG_SETMASK, &old, NULL);
        (void) sigaction(SIGPIPE, &old_pipe, NULL);
        is_str(got, "0", "nvidia-smi saw no blocked and no ignored signal");
        if (!got || !streq(got, "0")) {
                FILE *f = fopen(path("seen"), "re");
                char line[256] = "";
                if (f && fgets(line, sizeof(line), f))
                        diag("the program saw: %s", line);
                if (f)
                        fclose(f);
        }
}

static void test_slots_map_to_gpus(void) {
        char *l[] = { (char *) "0", (char *) "1", NULL };
        is_str(gpu_for_slot(l, 0), "0", "slot 0, GPU 0");
        is_str(gpu_for_slot(l, 3), "1", "slot 3, GPU 1 (round robin)");
        ok(gpu_for_slot(NULL, 0) == NULL, "no GPU, no CUDA_VISIBLE_DEVICES");
}

int main(void) {
        int fd;

        if (!mkdtemp(dir) || mkdir(path("dev-empty"), 0755) < 0 || mkdir(path("dev-one"), 0755) < 0)
                tap_bail("set-up");
        /* A regular file is enough: detection goes by the name. */
        fd = open(path("dev-one/nvidia3"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
                tap_bail("creat");
        close(fd);
        test_the_configured_nvidia_smi_is_asked();
        test_the_program_runs_with_a_clean_signal_state();
        test_slots_map_to_gpus();
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup of %s failed", dir);
        return tap_done();
}
