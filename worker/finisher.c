/* finisher.c: the artifact finalization thread (see finisher.h). Tasks go in a queue under a
 * mutex; done tasks come back through a second queue and an eventfd the event loop watches. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "finisher.h"

typedef struct FinisherTask {
        struct FinisherTask *next;
        ArtifactSet *artifacts;
        char *shared_dir, *job_id, *assignment_id;
        finisher_done_t done;
        void *userdata;
        int result;
} FinisherTask;

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

static void task_run(FinisherTask *t) {
        t->result = artifacts_finalize(t->artifacts);
        if (t->result >= 0 && t->shared_dir)
                (void) artifacts_publish_shared(t->artifacts, t->shared_dir, t->job_id, t->assignment_id);
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
                task_run(t);
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

int finisher_submit(Finisher *f, ArtifactSet *a, const char *shared_dir, const char *job_id,
                    const char *assignment_id, finisher_done_t done, void *userdata) {
        FinisherTask *t = calloc(1, sizeof(FinisherTask));

        if (!t)
                return -ENOMEM;
        *t = (FinisherTask){ .artifacts = a, .done = done, .userdata = userdata };
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
