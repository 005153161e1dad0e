/* finisher.c: the artifact finalization thread (see finisher.h). Tasks go in a queue under a
 * mutex; done tasks come back through a second queue and an eventfd the event loop watches. A
 * copy to the shared directory runs on a thread of its own, which the finisher waits for only
 * until the copy's deadline. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "finisher.h"

/* The slowest a copy to the shared directory may be, in bytes per second, over its time limit:
 * large outputs get the time it takes to copy them at this rate on top (a 100Mbit/s link). */
#define FINISHER_COPY_MIN_RATE (8u << 20)

typedef struct FinisherTask {
        struct FinisherTask *next;
        ArtifactSet *artifacts;
        char *shared_dir, *job_id, *assignment_id;
        usec_t copy_timeout;
        finisher_done_t done;
        void *userdata;
        int result;
} FinisherTask;

/* One copy to the shared directory, held by its thread and by the finisher until it has stopped
 * waiting for it: freed by whichever lets go last. It works on a set of its own (the finalized
 * files' paths only): a copy given up on may go on after the run and the run's set are gone. */
typedef struct SharedCopy {
        pthread_mutex_t lock;
        pthread_cond_t finished; /* on CLOCK_MONOTONIC */
        unsigned n_ref;
        bool done;
        ArtifactSet *set;
        char *shared_dir, *job_id, *assignment_id;
} SharedCopy;

struct Finisher {
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        bool stopping;
        FinisherTask *todo, **todo_tail; /* in submission order */
        FinisherTask *done, **done_tail;
        int event_fd;
        sd_event_source *event_source;
        /* A copy given up on at its deadline that has not returned yet: the share hangs, and
         * later copies are not tried until it returns (each would hang a thread more). Only the
         * finisher thread uses it, and finisher_free() once that has ended. */
        SharedCopy *stuck_copy;
};

static FinisherTask *task_free(FinisherTask *t) {
        free(t->shared_dir);
        free(t->job_id);
        free(t->assignment_id);
        free(t);
        return NULL;
}

static void task_list_free(FinisherTask *t) {
        while (t) {
                FinisherTask *next = t->next;
                task_free(t);
                t = next;
        }
}

static void shared_copy_unref(SharedCopy *c) {
        unsigned n;

        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        n = --c->n_ref;
        pthread_mutex_unlock(&c->lock);
        if (n > 0)
                return;
        artifacts_free(c->set);
        free(c->shared_dir);
        free(c->job_id);
        free(c->assignment_id);
        pthread_cond_destroy(&c->finished);
        pthread_mutex_destroy(&c->lock);
        free(c);
}

/* What artifacts_publish_shared() reads of a finalized set: the files' paths, and which files
 * they must lead to. */
static ArtifactSet *set_paths_copy(const ArtifactSet *a) {
        ArtifactSet *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->out.fd = c->err.fd = -EBADF;
        c->finalized = true;
        c->backend = a->backend;
        c->upload_state = a->upload_state;
        c->out.path = strdup(a->out.path);
        c->err.path = strdup(a->err.path);
        c->out.dev = a->out.dev;
        c->out.ino = a->out.ino;
        c->err.dev = a->err.dev;
        c->err.ino = a->err.ino;
        if (!c->out.path || !c->err.path)
                return artifacts_free(c);
        return c;
}

static SharedCopy *shared_copy_new(const FinisherTask *t) {
        SharedCopy *c = calloc(1, sizeof(*c));
        pthread_condattr_t attr;

        if (!c)
                return NULL;
        pthread_mutex_init(&c->lock, NULL);
        pthread_condattr_init(&attr);
        (void) pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&c->finished, &attr);
        pthread_condattr_destroy(&attr);
        c->n_ref = 1;
        c->set = set_paths_copy(t->artifacts);
        c->shared_dir = strdup(t->shared_dir);
        c->job_id = strdup(t->job_id);
        c->assignment_id = strdup(t->assignment_id);
        if (!c->set || !c->shared_dir || !c->job_id || !c->assignment_id) {
                shared_copy_unref(c);
                return NULL;
        }
        return c;
}

static void *shared_copy_thread(void *userdata) {
        SharedCopy *c = userdata;

        (void) artifacts_publish_shared(c->set, c->shared_dir, c->job_id, c->assignment_id);
        pthread_mutex_lock(&c->lock);
        c->done = true;
        pthread_cond_signal(&c->finished);
        pthread_mutex_unlock(&c->lock);
        shared_copy_unref(c);
        return NULL;
}

static int shared_copy_start(SharedCopy *c) {
        pthread_attr_t attr;
        pthread_t thread;
        int r;

        pthread_attr_init(&attr);
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        c->n_ref++; /* the thread's */
        r = pthread_create(&thread, &attr, shared_copy_thread, c);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                c->n_ref--;
                return -r;
        }
        return 0;
}

/* Whether the copy returned within timeout. */
static bool shared_copy_wait(SharedCopy *c, usec_t timeout) {
        struct timespec now, until;
        bool done;

        clock_gettime(CLOCK_MONOTONIC, &now);
        timeout = MIN(timeout, (usec_t) 365 * USEC_PER_DAY);
        until.tv_sec = now.tv_sec + (time_t) (timeout / USEC_PER_SEC);
        until.tv_nsec = now.tv_nsec + (long) (timeout % USEC_PER_SEC) * 1000;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&c->lock);
        for (int k = 0; !c->done && k == 0;) /* until done, or ETIMEDOUT */
                k = pthread_cond_timedwait(&c->finished, &c->lock, &until);
        done = c->done;
        pthread_mutex_unlock(&c->lock);
        return done;
}

static bool shared_copy_done(SharedCopy *c) {
        bool done;

        pthread_mutex_lock(&c->lock);
        done = c->done;
        pthread_mutex_unlock(&c->lock);
        return done;
}

/* The copy's outcome, as artifacts_publish_shared() would have left it in the run's own set. */
static void set_take_copy(ArtifactSet *a, ArtifactSet *c) {
        a->backend = c->backend;
        a->upload_state = c->upload_state;
        free_and_replace_str(&a->upload_error, TAKE_PTR(c->upload_error));
        if (!streq(c->upload_state, "uploaded"))
                return;
        free_and_replace_str(&a->location, TAKE_PTR(c->location));
        free_and_replace_str(&a->report_stdout, TAKE_PTR(c->report_stdout));
        free_and_replace_str(&a->report_stderr, TAKE_PTR(c->report_stderr));
}

static void set_copy_failed(ArtifactSet *a, const char *error) {
        a->backend = "shared";
        a->upload_state = "failed";
        free_and_replace_str(&a->upload_error, strdup(error));
}

/* Whether a copy given up on earlier is still hanging; forgets it once it has returned. */
static bool share_is_stuck(Finisher *f) {
        if (!f->stuck_copy)
                return false;
        if (!shared_copy_done(f->stuck_copy))
                return true;
        shared_copy_unref(TAKE_PTR(f->stuck_copy));
        return false;
}

/* The copy to the shared directory, waited for until its deadline. A share that does not answer
 * (a hung NFS mount) would otherwise hold the run, and with it its slot and its lease, for as
 * long as it hangs. Past the deadline the local files, already durable and hashed, are the ones
 * reported, with the reason, as for a copy that failed; the copy's thread is left to return
 * when the share does. */
static void task_publish_shared(Finisher *f, FinisherTask *t) {
        ArtifactSet *a = t->artifacts;
        usec_t timeout = t->copy_timeout + (a->out.size + a->err.size) / FINISHER_COPY_MIN_RATE * USEC_PER_SEC;
        char msg[512], span[64];
        SharedCopy *c;

        if (share_is_stuck(f)) {
                snprintf(msg, sizeof(msg), "not copied to %s: an earlier copy there has not returned", t->shared_dir);
                set_copy_failed(a, msg);
                return;
        }
        c = shared_copy_new(t);
        if (!c || shared_copy_start(c) < 0) {
                /* No thread for it: copied here, without a deadline, as before there was one. */
                shared_copy_unref(c);
                (void) artifacts_publish_shared(a, t->shared_dir, t->job_id, t->assignment_id);
                return;
        }
        if (shared_copy_wait(c, timeout)) {
                set_take_copy(a, c->set);
                shared_copy_unref(c);
                return;
        }
        snprintf(msg, sizeof(msg), "copy to %s/%s/%s did not finish within %s", t->shared_dir, t->job_id,
                 t->assignment_id, format_timespan(span, sizeof(span), timeout));
        set_copy_failed(a, msg);
        f->stuck_copy = c;
}

static void task_run(Finisher *f, FinisherTask *t) {
        t->result = artifacts_finalize(t->artifacts);
        if (t->result >= 0 && t->shared_dir)
                task_publish_shared(f, t);
}

static void *finisher_thread(void *userdata) {
        Finisher *f = userdata;
        uint64_t one = 1;

        pthread_mutex_lock(&f->lock);
        for (;;) {
                FinisherTask *t;
                while (!f->todo && !f->stopping)
                        pthread_cond_wait(&f->wake, &f->lock);
                if (f->stopping)
                        break;
                t = f->todo;
                f->todo = t->next;
                if (!f->todo)
                        f->todo_tail = &f->todo;
                pthread_mutex_unlock(&f->lock);
                task_run(f, t);
                pthread_mutex_lock(&f->lock);
                t->next = NULL;
                *f->done_tail = t;
                f->done_tail = &t->next;
                /* Cannot fail short of a counter at its maximum, which one per task never reaches. */
                ssize_t k _unused_ = write(f->event_fd, &one, sizeof(one));
        }
        pthread_mutex_unlock(&f->lock);
        return NULL;
}

/* On the event loop: the callbacks of every set done so far, in order. */
static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Finisher *f = userdata;
        FinisherTask *t;
        uint64_t n;

        if (read(f->event_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
                return -errno;
        pthread_mutex_lock(&f->lock);
        t = f->done;
        f->done = NULL;
        f->done_tail = &f->done;
        pthread_mutex_unlock(&f->lock);
        while (t) {
                FinisherTask *next = t->next;
                t->done(t->userdata, t->result);
                task_free(t);
                t = next;
        }
        return 0;
}

int finisher_new(sd_event *event, Finisher **ret) {
        _cleanup_(finisher_freep) Finisher *f = calloc(1, sizeof(Finisher));
        int r;

        if (!f)
                return -ENOMEM;
        pthread_mutex_init(&f->lock, NULL);
        pthread_cond_init(&f->wake, NULL);
        f->todo_tail = &f->todo;
        f->done_tail = &f->done;
        f->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (f->event_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &f->event_source, f->event_fd, EPOLLIN, on_done, f);
        if (r < 0)
                return r;
        r = pthread_create(&f->thread, NULL, finisher_thread, f);
        if (r != 0)
                return -r;
        f->thread_started = true;
        *ret = TAKE_PTR(f);
        return 0;
}

Finisher *finisher_free(Finisher *f) {
        if (!f)
                return NULL;
        if (f->thread_started) {
                pthread_mutex_lock(&f->lock);
                f->stopping = true;
                pthread_cond_signal(&f->wake);
                pthread_mutex_unlock(&f->lock);
                pthread_join(f->thread, NULL);
        }
        shared_copy_unref(f->stuck_copy); /* its thread, if still hanging, frees it when it returns */
        task_list_free(f->todo);
        task_list_free(f->done);
        sd_event_source_disable_unref(f->event_source);
        if (f->event_fd >= 0)
                close(f->event_fd);
        pthread_cond_destroy(&f->wake);
        pthread_mutex_destroy(&f->lock);
        free(f);
        return NULL;
}

int finisher_submit(Finisher *f, ArtifactSet *a, const char *shared_dir, const char *job_id, const char *assignment_id,
                    usec_t copy_timeout, finisher_done_t done, void *userdata) {
        FinisherTask *t = calloc(1, sizeof(FinisherTask));

        if (!t)
                return -ENOMEM;
        *t = (FinisherTask){.artifacts = a, .copy_timeout = copy_timeout, .done = done, .userdata = userdata};
        t->job_id = strdup(job_id);
        t->assignment_id = strdup(assignment_id);
        t->shared_dir = shared_dir ? strdup(shared_dir) : NULL;
        if (!t->job_id || !t->assignment_id || (shared_dir && !t->shared_dir)) {
                task_free(t);
                return -ENOMEM;
        }
        pthread_mutex_lock(&f->lock);
        *f->todo_tail = t;
        f->todo_tail = &t->next;
        pthread_cond_signal(&f->wake);
        pthread_mutex_unlock(&f->lock);
        return 0;
}
