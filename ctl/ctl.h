/* ctl.h: what the parts of entropyctl share: its settings, exit codes, the error a failed call
 * leaves behind, and the backend interface that the D-Bus (ctl-bus.c) and HTTP (ctl-http.c)
 * transports implement, so that every verb (ctl-verbs.c) works the same over both. Jobs, workers
 * and events are passed around as json-c objects with the wire contract's field names; null
 * fields are dropped, as D-Bus cannot carry them. */
#pragma once

#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"
#include "time-util.h"

/* Exit codes, documented in --help and entropyctl(1). */
enum {
        CTL_EXIT_OK = 0,
        CTL_EXIT_FAILURE = 1,     /* anything else: conflict, internal error */
        CTL_EXIT_USAGE = 2,       /* bad command line, or arguments the control plane refused */
        CTL_EXIT_JOB_FAILED = 3,  /* submit --wait: the job ended FAILED or ABORTED */
        CTL_EXIT_NOT_FOUND = 4,   /* no such job or worker */
        CTL_EXIT_ACCESS = 5,      /* access denied (bad token, not authorized) */
        CTL_EXIT_UNREACHABLE = 6, /* control plane not reachable */
};

typedef enum OutputMode {
        OUTPUT_TABLE,
        OUTPUT_JSON,
        OUTPUT_JSON_PRETTY,
} OutputMode;

typedef struct CtlSettings {
        char *config;
        char *url;
        char *token_file;
        char *worker_token_file;
        char *ca_file;         /* --url https://: the CA the server's certificate must chain to */
        char *tls_certificate; /* --url with mTLS: client certificate and key (PEM) */
        char *tls_key;
        char *output;
        bool no_legend;
        bool no_pager;
        bool user_bus;
        usec_t timeout;
} CtlSettings;

/* Why the last backend call failed, for the user. */
typedef struct CtlError {
        char message[512];
} CtlError;

int ctl_error_set(CtlError *e, int r, const char *format, ...) _printf_(3, 4);
/* The exit code for a negative errno of a backend call. */
int ctl_exit_code(int r);

typedef struct EventQuery {
        const char *job_id, *worker_id, *event;
        int64_t after_id;
        int64_t limit;
        bool oldest_first; /* ascending ids: pages through everything after after_id */
} EventQuery;

typedef struct Backend Backend;

typedef struct BackendOps {
        const char *name;
        int (*submit)(Backend *b, json_object *spec, char **ret_job_id, CtlError *e);
        int (*list_jobs)(Backend *b, const char *state, const char *worker, json_object **ret, CtlError *e);
        int (*get_job)(Backend *b, const char *job_id, json_object **ret, CtlError *e);
        /* ret_reason: the reason the jobs keep, when the control plane's answer says it (the
         * default it made for a NULL or empty reason included), else NULL. */
        int (*abort_job)(Backend *b, const char *job_id, const char *reason, char **ret_reason, CtlError *e);
        int (*abort_worker)(Backend *b, const char *worker_id, const char *reason, uint64_t *ret_n, char **ret_reason,
                            CtlError *e);
        int (*list_workers)(Backend *b, json_object **ret, CtlError *e);
        int (*drain)(Backend *b, const char *worker_id, bool drain, CtlError *e);
        /* Forgets an OFFLINE worker that holds no ASSIGNED or RUNNING job; -EBUSY otherwise. */
        int (*remove_worker)(Backend *b, const char *worker_id, CtlError *e);
        int (*events)(Backend *b, const EventQuery *q, json_object **ret, CtlError *e);
        int (*reconcile)(Backend *b, uint64_t *ret_changes, CtlError *e);
        int (*reload)(Backend *b, CtlError *e);
        /* POST /reconnect for a worker with a body built from its replay file. */
        int (*replay)(Backend *b, json_object *body, json_object **ret, CtlError *e);
        /* Optional: starts listening for state changes before a job is submitted. */
        int (*watch)(Backend *b, CtlError *e);
        /* Waits until the job's state differs from *state (NULL: report the current one);
         * sets *state to the new state (owned by the caller). */
        int (*wait_state)(Backend *b, const char *job_id, char **state, CtlError *e);
        void (*free)(Backend *b);
} BackendOps;

struct Backend {
        const BackendOps *ops;
        const CtlSettings *settings;
};

int backend_bus_new(const CtlSettings *s, Backend **ret, CtlError *e);
int backend_http_new(const CtlSettings *s, Backend **ret, CtlError *e);
static inline void backend_freep(Backend **b) {
        if (*b)
                (*b)->ops->free(*b);
}

/* Drops null members and prints doubles in their shortest exact form, recursively: the form in
 * which both transports give identical JSON. */
void json_normalize(json_object *o);

/* Verbs (ctl-verbs.c): argv[0] is the verb. */
typedef struct Verb {
        const char *name;
        int (*run)(Backend *b, const CtlSettings *s, int argc, char **argv);
        const char *usage;
        const char *help;
        /* For a verb whose options end at its first operand (submit: the job's command): the
         * getopt_long() table it parses them with, options "+". The --help scan parses with the
         * same table, so that it steps over option values as the verb does. NULL otherwise. */
        const struct option *stop_options;
        /* Works on local files only: run without a connection to the control plane (b is NULL). */
        bool local;
} Verb;

extern const Verb ctl_verbs[];
extern const size_t ctl_n_verbs;
