/* test-worker-gpu.c: GPU detection: the UUIDs the --nvidia-smi program (never another one) lists
 * with -L, run with the signal state a program expects, else the /dev/nvidia<N> nodes as CUDA
 * ordinals; the ids --gpus takes; the slot map. */
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
        is_str(a, "GPU-0,GPU-1", "no device node: the --nvidia-smi program is asked, its UUIDs taken");
        b = detect(path("dev-empty"), "");
        is_str(b, "", "--nvidia-smi empty: no program is asked, no GPU");
        c = detect(path("dev-empty"), path("missing-nvidia-smi"));
        is_str(c, "", "a --nvidia-smi that does not exist: no GPU");
        /* /dev/nvidia3 is minor 3; CUDA may well call it 0, and nvidia-smi knows its UUID. */
        d = detect(path("dev-one"), path("my-nvidia-smi"));
        is_str(d, "GPU-0,GPU-1", "nvidia-smi's UUIDs win over the device nodes");
}

#define A100_0 "GPU-5d4c3b2a-1f0e-4d9c-8b7a-6e5f4d3c2b1a"
#define A100_1 "GPU-0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
#define MIG_0  "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"
#define MIG_1  "MIG-0f1e2d3c-4b5a-5968-8776-a5b4c3d2e1f0"

static char *parse(const char *text) {
        _cleanup_strv_free_ char **l = NULL;
        int r = gpu_parse_smi_list(text, &l);
        if (r < 0) {
                char *e;
                return asprintf(&e, "(error %d)", r) < 0 ? NULL : e;
        }
        return strv_join(l, ",");
}

static void test_nvidia_smi_list_is_parsed_to_uuids(void) {
        _cleanup_free_ char *plain = NULL, *mig = NULL, *noise = NULL, *cut = NULL, *cut_mig = NULL, *no_uuid = NULL,
                            *empty = NULL, *orphan = NULL, *not_gpu = NULL, *bad = NULL, *old_mig = NULL, *no_nl = NULL;

        plain = parse("GPU 0: NVIDIA A100-SXM4-40GB (UUID: " A100_0 ")\n"
                      "GPU 1: NVIDIA A100-SXM4-40GB (UUID: " A100_1 ")\n");
        is_str(plain, A100_0 "," A100_1, "plain GPUs: their UUIDs, in nvidia-smi's order");
        no_nl = parse("GPU 0: NVIDIA A100-SXM4-40GB (UUID: " A100_0 ")");
        is_str(no_nl, A100_0, "a complete last line without its newline");
        mig = parse("GPU 0: NVIDIA A100-SXM4-40GB (UUID: " A100_0 ")\n"
                    "  MIG 3g.20gb     Device  0: (UUID: " MIG_0 ")\n"
                    "  MIG 3g.20gb     Device  1: (UUID: " MIG_1 ")\n"
                    "GPU 1: NVIDIA A100-SXM4-40GB (UUID: " A100_1 ")\n");
        is_str(mig, MIG_0 "," MIG_1 "," A100_1, "a GPU in MIG mode gives its MIG devices, not itself");
        old_mig = parse("GPU 0: A100 (UUID: " A100_0 ")\n"
                        "  MIG 1g.5gb Device 0: (UUID: MIG-" A100_0 "/7/0)\n");
        is_str(old_mig, "MIG-" A100_0 "/7/0", "the R450 MIG-GPU-<uuid>/<gi>/<ci> form");
        noise = parse("WARNING: infoROM is corrupted at gpu 0000:00:04.0\n\n"
                      "GPU 0: Tesla T4 (UUID: " A100_0 ")\n"
                      "Some other line\n");
        is_str(noise, A100_0, "lines that are neither GPU nor MIG are ignored");
        empty = parse("");
        is_str(empty, "", "no output: no GPU");
        cut = parse("GPU 0: NVIDIA A100-SXM4-40GB (UUID: " A100_0 ")\nGPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-0a1b");
        is_str(cut, "(error -74)", "output cut in a UUID: refused whole, not one GPU short");
        cut_mig = parse("GPU 0: NVIDIA A100 (UUID: " A100_0 ")\n  MIG 1g.5gb Device 0: (UUI");
        is_str(cut_mig, "(error -74)", "output cut in a MIG line: refused");
        no_uuid = parse("GPU 0: Old GPU\n");
        is_str(no_uuid, "(error -74)", "a GPU line without a UUID: refused (no index guessed)");
        not_gpu = parse("GPU 0: Other GPU (UUID: 1)\n");
        is_str(not_gpu, "(error -74)", "a GPU line whose UUID is not a GPU-<uuid>: refused");
        orphan = parse("  MIG 1g.5gb Device 0: (UUID: " MIG_0 ")\n");
        is_str(orphan, "(error -74)", "a MIG device before any GPU: refused");
        bad = parse("GPU 0: X (UUID: GPU-12,34)\n");
        is_str(bad, "(error -74)", "a UUID with a comma (two CUDA_VISIBLE_DEVICES entries): refused");
}

/* A fake nvidia-smi that fails or misbehaves: the device nodes are used, as ordinals. */
static void test_a_failing_nvidia_smi_falls_back_to_the_device_nodes(void) {
        _cleanup_free_ char *fails = NULL, *garbage = NULL, *none = NULL, *hangs = NULL;

        write_script(path("failing-nvidia-smi"), "echo 'GPU 0: X (UUID: " A100_0 ")'\nexit 9\n");
        fails = detect(path("dev-subset"), path("failing-nvidia-smi"));
        is_str(fails, "0,1", "nvidia-smi exits 9: the device nodes, as ordinals (its output not taken)");
        write_script(path("garbage-nvidia-smi"), "echo 'GPU 0: (UUID: GPU-'\n");
        garbage = detect(path("dev-subset"), path("garbage-nvidia-smi"));
        is_str(garbage, "0,1", "nvidia-smi prints a cut UUID: the device nodes");
        write_script(path("empty-nvidia-smi"), "exit 0\n");
        none = detect(path("dev-subset"), path("empty-nvidia-smi"));
        is_str(none, "0,1", "nvidia-smi lists nothing: the device nodes");
        write_script(path("hung-nvidia-smi"), "echo 'GPU 0: X (UUID: " A100_0 ")'\nexec sleep 30\n");
        hangs = detect(path("dev-subset"), path("hung-nvidia-smi"));
        is_str(hangs, "0,1", "nvidia-smi hangs: killed after 5s, the device nodes");
}

/* A container given /dev/nvidia2 and /dev/nvidia3: CUDA sees them as GPUs 0 and 1, and
 * CUDA_VISIBLE_DEVICES=2 would name a GPU it does not have. */
static void test_device_nodes_give_cuda_ordinals(void) {
        _cleanup_strv_free_ char **l = NULL, **none = NULL;
        _cleanup_free_ char *j = NULL, *k = NULL;

        is_int(gpu_detect_dev(path("dev-subset"), &l), 0, "device nodes listed");
        j = strv_join(l, ",");
        is_str(j, "0,1",
               "/dev/nvidia2 and /dev/nvidia3 are ordinals 0 and 1; nvidiactl, nvidia-uvm, "
               "nvidia-uvm-tools, nvidia-modeset, nvidia-caps ignored");
        is_int(gpu_detect_dev(path("dev-empty"), &none), 0, "an empty directory");
        ok(strv_length(none) == 0, "no device node, no GPU");
        k = detect(path("dev-subset"), "");
        is_str(k, "0,1", "without nvidia-smi, detection gives the ordinals");
}

static char *detect_override(char **override) {
        _cleanup_strv_free_ char **l = NULL;
        if (gpu_detect(override, path("dev-subset"), "", &l) < 0)
                return strdup("(refused)");
        return strv_join(l, ",");
}

static void test_gpu_ids_taken_by_the_override(void) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        ok(gpu_id_is_valid("0") && gpu_id_is_valid("15"), "indices");
        ok(gpu_id_is_valid(A100_0), "a GPU-<uuid>");
        ok(gpu_id_is_valid(MIG_0), "a MIG-<uuid>");
        ok(gpu_id_is_valid("MIG-" A100_0 "/1/0"), "a MIG-GPU-<uuid>/<gi>/<ci>");
        ok(!gpu_id_is_valid("") && !gpu_id_is_valid(NULL), "empty refused");
        ok(!gpu_id_is_valid("-1") && !gpu_id_is_valid("1.5") && !gpu_id_is_valid("99999"), "not an index refused");
        ok(!gpu_id_is_valid("GPU-") && !gpu_id_is_valid("GPU-xyz") && !gpu_id_is_valid("GPU-1/2"),
           "a GPU- without hex refused");
        ok(!gpu_id_is_valid("gpu-0") && !gpu_id_is_valid("cuda:0") && !gpu_id_is_valid("MIG-a,b") &&
                   !gpu_id_is_valid("MIG-a b") && !gpu_id_is_valid("all"),
           "anything else refused");
        a = detect_override((char *[]){ (char *) "1", (char *) A100_0, (char *) MIG_0, NULL });
        is_str(a, "1," A100_0 "," MIG_0, "--gpus takes indices and UUIDs as given");
        b = detect_override((char *[]){ (char *) "none", NULL });
        is_str(b, "", "--gpus=none: no GPU");
        c = detect_override((char *[]){ (char *) "0", (char *) "GPU-zz", NULL });
        is_str(c, "(refused)", "--gpus with a bad id refused");
        d = detect_override((char *[]){ (char *) "0", (char *) "none", NULL });
        is_str(d, "(refused)", "--gpus=none goes alone");
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
                 "[ $((0x$blk & 0x7fffffff)) = 0 ] && [ $((0x$ign & 0x7fffffff)) = 0 ] &&\n"
                 "  echo 'GPU 0: clean (UUID: GPU-0)'\n"
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
        is_str(got, "GPU-0", "nvidia-smi saw no blocked and no ignored signal");
        if (!got || !streq(got, "GPU-0")) {
                FILE *f = fopen(path("seen"), "re");
                char line[256] = "";
                if (f && fgets(line, sizeof(line), f))
                        diag("the program saw: %s", line);
                if (f)
                        fclose(f);
        }
}

/* "<ids joined by commas>|<where it stopped, or ->" */
static char *visible(const char *value) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *ids = NULL;
        const char *stop = NULL;
        char *out = NULL;

        if (gpu_parse_visible(value, &l, &stop) < 0)
                return NULL;
        ids = strv_join(l, ",");
        if (!ids || asprintf(&out, "%s|%s", ids, stop ? stop : "-") < 0)
                return NULL;
        return out;
}

/* CUDA's reading: the devices named, in that order, up to the first entry that names none. */
static void test_the_workers_own_cuda_visible_devices(void) {
        const char *cases[][3] = {
                { "1", "1|-", "one index" },
                { "2,0", "2,0|-", "the order kept" },
                { " 0 , " A100_1 " ", "0," A100_1 "|-", "spaces around entries ignored" },
                { "0,2,-1,1", "0,2|-1,1", "stops at the first entry that is not a GPU (CUDA's rule)" },
                { "-1", "|-1", "-1: no GPU" },
                { "", "|-", "empty: no GPU" },
                { "0,,1", "0|,1", "an empty entry stops it" },
                { "0,1,", "0,1|-", "a trailing comma" },
                { MIG_0, MIG_0 "|-", "a MIG device" },
                { "all", "|all", "a word CUDA does not take: no GPU" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *got = visible(cases[i][0]);
                is_str(got, cases[i][1], "CUDA_VISIBLE_DEVICES=\"%s\": %s", cases[i][0], cases[i][2]);
        }
}

static void test_slots_map_to_gpus(void) {
        char *l[] = { (char *) A100_0, (char *) A100_1, NULL };
        is_str(gpu_for_slot(l, 0), A100_0, "slot 0, the first GPU");
        is_str(gpu_for_slot(l, 1), A100_1, "slot 1, the second GPU");
        is_str(gpu_for_slot(l, 3), A100_1, "slot 3, the second GPU (round robin)");
        ok(gpu_for_slot(NULL, 0) == NULL, "no GPU, no CUDA_VISIBLE_DEVICES");
}

int main(void) {
        const char *nodes[] = { "dev-one/nvidia3",          "dev-subset/nvidia2",       "dev-subset/nvidia3",
                                "dev-subset/nvidiactl",     "dev-subset/nvidia-uvm",    "dev-subset/nvidia-uvm-tools",
                                "dev-subset/nvidia-modeset", "dev-subset/nvidia-caps/x" };

        if (!mkdtemp(dir) || mkdir(path("dev-empty"), 0755) < 0 || mkdir(path("dev-one"), 0755) < 0 ||
            mkdir(path("dev-subset"), 0755) < 0 || mkdir(path("dev-subset/nvidia-caps"), 0755) < 0)
                tap_bail("set-up");
        /* A regular file is enough: detection goes by the name. */
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
                int fd = open(path(nodes[i]), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0)
                        tap_bail("creat %s", nodes[i]);
                close(fd);
        }
        test_the_configured_nvidia_smi_is_asked();
        test_nvidia_smi_list_is_parsed_to_uuids();
        test_a_failing_nvidia_smi_falls_back_to_the_device_nodes();
        test_device_nodes_give_cuda_ordinals();
        test_gpu_ids_taken_by_the_override();
        test_the_program_runs_with_a_clean_signal_state();
        test_the_workers_own_cuda_visible_devices();
        test_slots_map_to_gpus();
        char cmd[PATH_MAX + 16];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        if (system(cmd) != 0)
                diag("cleanup of %s failed", dir);
        return tap_done();
}
