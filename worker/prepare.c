/* prepare.c: the policy's checks of claimed jobs on threads of their own (see prepare.h). A check
 * that returns goes on a queue under a mutex and an eventfd wakes the event loop, which joins the
 * thread and calls back. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "list.h"
#include "prepare.h"
#include "strv.h"

/* policy_check() needs little: paths and a few small allocations. */
#define PREPARE_STACK_SIZE (512u * 1024u)

/* The hand-back point, held by the preparer and by every check: freed by whichever lets go last,
 * so that a thread that returns after the preparer is gone touches nothing freed. */
typedef struct PrepareQueue {
        pthread_mutex_t lock;
        unsigned n_ref;
        int event_fd;      /* -EBADF once the preparer is gone: a check that returns then frees itself */
        Preparation *done; /* returned, not delivered yet */
} PrepareQueue;

struct Preparation {
        PrepareQueue *queue;
        Preparation *next_done;             /* PrepareQueue.done */
        Preparation *prev_live, *next_live; /* Preparer.live; the event loop's only */
        pthread_t thread;

        /* The thread's, from its start until it queues itself. */
        Policy policy;
        char *command, *working_dir;
        PrepareResult result;

        bool queued; /* on PrepareQueue.done (under its lock) */

        /* The event loop's. */
        prepare_done_t done;
        void *userdata;
        bool abandoned, hung;
};

struct Preparer {
        PrepareQueue *queue;
        sd_event_source *event_source;
        Preparation *live; /* started, not delivered */
        size_t n_hung;
};

static void queue_unref(PrepareQueue *q) {
        unsigned n;

        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        n = --q->n_ref;
        pthread_mutex_unlock(&q->lock);
        if (n > 0)
                return;
        if (q->event_fd >= 0)
                close(q->event_fd);
        pthread_mutex_destroy(&q->lock);
        free(q);
}

static void preparation_free(Preparation *c) {
        if (!c)
                return;
        strv_free(c->policy.command_allowlist);
        strv_free(c->policy.workdir_allowlist);
        free((char *) c->policy.path_env);
        free(c->command);
        free(c->working_dir);
        free(c->result.exec_path);
        free(c->result.workdir);
        free(c->result.reason);
        queue_unref(c->queue);
        free(c);
}

static void *check_thread(void *userdata) {
        Preparation *c = userdata;
        PrepareQueue *q = c->queue;

        c->result.verdict = policy_check(&c->policy, c->command, c->working_dir, &c->result.exec_path,
                                         &c->result.workdir, &c->result.reason);
        pthread_mutex_lock(&q->lock);
        if (q->event_fd >= 0) {
                c->queued = true;
                c->next_done = q->done;
                q->done = c;
                (void) eventfd_write(q->event_fd, 1);
                pthread_mutex_unlock(&q->lock);
                return NULL; /* c is the event loop's now */
        }
        pthread_mutex_unlock(&q->lock);
        preparation_free(c); /* the preparer is gone, and this thread detached */
        return NULL;
}

static void deliver(Preparer *p, Preparation *c) {
        LIST_REMOVE(p->live, c, next_live, prev_live);
        (void) pthread_join(c->thread, NULL); /* it has queued itself: it is returning */
        if (c->hung)
                p->n_hung--;
        if (!c->abandoned)
                c->done(c->userdata, &c->result);
        preparation_free(c);
}

static int on_event(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Preparer *p = userdata;
        Preparation *list;
        eventfd_t v;

        (void) eventfd_read(fd, &v);
        pthread_mutex_lock(&p->queue->lock);
        list = TAKE_PTR(p->queue->done);
        pthread_mutex_unlock(&p->queue->lock);
        while (list) {
                Preparation *c = list;
                list = c->next_done;
                deliver(p, c);
        }
        return 0;
}

int preparer_new(sd_event *event, Preparer **ret) {
        _cleanup_(preparer_freep) Preparer *p = calloc(1, sizeof(*p));
        int r;

        if (!p)
                return -ENOMEM;
        p->queue = calloc(1, sizeof(*p->queue));
        if (!p->queue)
                return -ENOMEM;
        pthread_mutex_init(&p->queue->lock, NULL);
        p->queue->n_ref = 1;
        p->queue->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->queue->event_fd < 0)
                return -errno;
        r = sd_event_add_io(event, &p->event_source, p->queue->event_fd, EPOLLIN, on_event, p);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(p->event_source, "job-checks");
        *ret = TAKE_PTR(p);
        return 0;
}

Preparer *preparer_free(Preparer *p) {
        Preparation *done;

        if (!p)
                return NULL;
        p->event_source = sd_event_source_disable_unref(p->event_source);
        if (p->queue) {
                /* Under the lock no check can queue or free itself: those not queued yet are
                 * detached, and free themselves when they return; those queued end here. */
                pthread_mutex_lock(&p->queue->lock);
                done = TAKE_PTR(p->queue->done);
                for (Preparation *c = p->live; c; c = c->next_live)
                        if (!c->queued)
                                (void) pthread_detach(c->thread);
                close(p->queue->event_fd);
                p->queue->event_fd = -EBADF;
                pthread_mutex_unlock(&p->queue->lock);
                while (done) {
                        Preparation *c = done;
                        done = c->next_done;
                        (void) pthread_join(c->thread, NULL);
                        preparation_free(c);
                }
                queue_unref(p->queue);
        }
        free(p);
        return NULL;
}

static int policy_copy(const Policy *from, Policy *to) {
        const char *path = from->path_env ? from->path_env : getenv("PATH");

        *to = (Policy){.refuse_root = from->refuse_root, .euid = from->euid};
        if ((from->command_allowlist && !(to->command_allowlist = strv_copy(from->command_allowlist))) ||
            (from->workdir_allowlist && !(to->workdir_allowlist = strv_copy(from->workdir_allowlist))))
                return -ENOMEM;
        /* Read here, not on the thread: getenv() is not safe beside a setenv() elsewhere. */
        if (path && !(to->path_env = strdup(path)))
                return -ENOMEM;
        return 0;
}

int preparer_start(Preparer *p, const Policy *policy, const char *command, const char *working_dir, prepare_done_t done,
                   void *userdata, Preparation **ret) {
        Preparation *c = calloc(1, sizeof(*c));
        pthread_attr_t attr;
        int r;

        if (!c)
                return -ENOMEM;
        pthread_mutex_lock(&p->queue->lock);
        p->queue->n_ref++;
        pthread_mutex_unlock(&p->queue->lock);
        c->queue = p->queue;
        c->done = done;
        c->userdata = userdata;
        if (policy_copy(policy, &c->policy) < 0 || (command && !(c->command = strdup(command))) ||
            (working_dir && !(c->working_dir = strdup(working_dir)))) {
                preparation_free(c);
                return -ENOMEM;
        }
        pthread_attr_init(&attr);
        (void) pthread_attr_setstacksize(&attr, PREPARE_STACK_SIZE);
        r = pthread_create(&c->thread, &attr, check_thread, c);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                preparation_free(c);
                return -r;
        }
        LIST_PREPEND(p->live, c, next_live, prev_live);
        *ret = c;
        return 0;
}

void preparation_abandon(Preparer *p, Preparation *c, bool hung) {
        if (!c || c->abandoned)
                return;
        c->abandoned = true;
        c->hung = hung;
        if (hung)
                p->n_hung++;
}

size_t preparer_n_hung(const Preparer *p) {
        return p ? p->n_hung : 0;
}
