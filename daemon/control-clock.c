/* control-clock.c: the control plane's clock (control-clock.h) and the watch on realtime changes. */
#include <errno.h>
#include <stdint.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "control-clock.h"
#include "log.h"
#include "macro.h"

#define TIME_T_MAX ((time_t) ((UINTMAX_C(1) << ((sizeof(time_t) << 3) - 1)) - 1))

usec_t control_realtime(const Control *c) {
        return c && c->clock_override ? c->clock_override : now_realtime_usec();
}

static usec_t elapsed(const Control *c) {
        return c && c->clock_override ? c->elapsed_override : now_boottime_usec();
}

/* control_now() when CLOCK_BOOTTIME reads e. */
static usec_t anchored_at(const Control *c, usec_t e) {
        return c->clock.realtime + (e > c->clock.elapsed ? e - c->clock.elapsed : 0);
}

usec_t control_now(const Control *c) {
        if (!c || c->clock.realtime == 0)
                return control_realtime(c);
        return anchored_at(c, elapsed(c));
}

/* Both clocks at (nearly) the same instant: a pair split by a preemption is read again, so that
 * the time between the two readings is not taken for a step. */
static void read_pair(const Control *c, usec_t *ret_realtime, usec_t *ret_elapsed) {
        usec_t before, rt, after;

        for (unsigned i = 0;; i++) {
                before = elapsed(c);
                rt = control_realtime(c);
                after = elapsed(c);
                if (after - before < USEC_PER_MSEC || i == 3)
                        break;
        }
        *ret_realtime = rt;
        *ret_elapsed = before + (after - before) / 2;
}

void control_clock_anchor(Control *c) {
        read_pair(c, &c->clock.realtime, &c->clock.elapsed);
}

int64_t control_clock_follow(Control *c) {
        usec_t rt, e;

        read_pair(c, &rt, &e);
        if (c->clock.realtime == 0) {
                c->clock.realtime = rt;
                c->clock.elapsed = e;
                return 0;
        }
        usec_t now = anchored_at(c, e);
        int64_t step =
                rt >= now ? (int64_t) MIN(rt - now, (usec_t) INT64_MAX) : -(int64_t) MIN(now - rt, (usec_t) INT64_MAX);
        if (step > -(int64_t) CONTROL_CLOCK_STEP_MIN && step < (int64_t) CONTROL_CLOCK_STEP_MIN)
                return 0;
        c->clock.realtime = rt;
        c->clock.elapsed = e;
        return step;
}

/* An absolute CLOCK_REALTIME timer set to the end of time, cancelled (read() gives ECANCELED)
 * whenever the clock is set: the kernel's notice of a step. */
static int watch_arm(int fd) {
        struct itimerspec its = {.it_value.tv_sec = TIME_T_MAX};
        return timerfd_settime(fd, TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, NULL) < 0 ? -errno : 0;
}

static int on_clock_set(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Control *c = userdata;
        uint64_t expirations;

        /* ECANCELED is the notice; whatever read() said, the timer is armed again. */
        (void) read(fd, &expirations, sizeof(expirations));
        if (watch_arm(fd) < 0)
                log_warning("Failed to re-arm the realtime clock watch: %m");
        log_debug("The realtime clock was set.");
        if (c->clock.on_set)
                c->clock.on_set(c);
        return 0;
}

int control_clock_watch_start(Control *c, void (*fn)(Control *c)) {
        int fd, r;

        fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = watch_arm(fd);
        if (r >= 0)
                r = sd_event_add_io(c->event, &c->clock.watch, fd, EPOLLIN, on_clock_set, c);
        if (r < 0) {
                close(fd);
                return r;
        }
        (void) sd_event_source_set_io_fd_own(c->clock.watch, true);
        (void) sd_event_source_set_description(c->clock.watch, "clock-watch");
        c->clock.on_set = fn;
        return 0;
}

void control_clock_watch_stop(Control *c) {
        c->clock.watch = sd_event_source_disable_unref(c->clock.watch);
}
