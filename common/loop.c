/*
 * loop.c - libuv loop with ZeroMQ sockets, timers, signals and worker
 * threads (see loop.h for the contract and the ZMQ_FD reasoning).
 *
 * Handle lifetimes: a zsock or timer is unlinked and freed only in its libuv
 * close callback. Close callbacks run in their own phase, never while the
 * check callback walks the socket list, so the walk can follow next pointers
 * of entries that were removed (marked closing) by a callback in between.
 *
 * Worker hand-off: one mutex guards the job queue (loop -> workers) and the
 * done queue (workers and loop_post -> loop); a uv_async wakes the loop. The
 * async handle is referenced only while jobs are pending, so an idle loop
 * with nothing else to do still returns from loop_run.
 */
#include "common/loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct loop_zsock {
    loop_t *loop;   // borrowed
    void *sock;     // borrowed zmq socket
    uv_poll_t poll; // on ZMQ_FD, readable
    loop_msg_fn on_msg;
    void *ud;
    loop_writable_fn on_writable; // one shot, NULL when not wanted
    void *wud;
    bool closing;                                                 // removed; freed in the close callback
    metrics_counter_t *msgs_in, *msgs_out, *bytes_in, *bytes_out; // borrowed, NULL without metrics
    struct loop_zsock *prev, *next;
};

struct loop_timer {
    loop_t *loop; // borrowed
    uv_timer_t h;
    loop_timer_fn fn;
    void *ud;
    bool closing;
    struct loop_timer *prev, *next;
};

typedef struct job {
    loop_work_fn work; // NULL for a post
    loop_done_fn done;
    loop_post_fn post;
    void *arg;
    struct job *next;
} job_t;

struct loop {
    uv_loop_t uv;
    metrics_t *metrics; // borrowed, may be NULL
    metrics_family_t *f_msgs, *f_bytes;
    metrics_counter_t *rej_parts;
    uv_check_t check; // re-checks every socket after each poll phase
    uv_idle_t idle;   // running = the next poll must not block
    bool idle_on;
    uv_async_t async; // worker results, posts, loop_stop
    atomic_bool stop_requested;
    loop_zsock_t *zsocks; // list, newest first
    loop_timer_t *timers; // list

    pthread_mutex_t mu;           // guards the two queues and quit
    pthread_cond_t cv;            // jobs queued or quit
    job_t *todo_head, *todo_tail; // submitted, not started
    job_t *done_head, *done_tail; // finished jobs and posts, for the loop thread
    bool quit;
    pthread_t *threads;
    int nthreads;
    int pending; // submitted and not yet done (loop thread)

    uv_signal_t sigint, sigterm;
    bool signals_on;
    int nsignals;
    loop_signal_fn on_drain, on_force;
    void *sig_ud;
};

/* ---- helpers ---- */

static void idle_cb(uv_idle_t *h) {
    (void)h;
}

static void idle_start(loop_t *l) {
    if (!l->idle_on) {
        uv_idle_start(&l->idle, idle_cb);
        l->idle_on = true;
    }
}

static void idle_stop(loop_t *l) {
    if (l->idle_on) {
        uv_idle_stop(&l->idle);
        l->idle_on = false;
    }
}

static void async_update_ref(loop_t *l) {
    if (l->pending > 0)
        uv_ref((uv_handle_t *)&l->async);
    else
        uv_unref((uv_handle_t *)&l->async);
}

static void queue_push(job_t **head, job_t **tail, job_t *j) {
    j->next = NULL;
    if (*tail)
        (*tail)->next = j;
    else
        *head = j;
    *tail = j;
}

/* ---- zmq sockets ---- */

/* Receive one whole message and hand it to the callback (or drop it). */
static void zsock_recv_one(loop_zsock_t *z) {
    zmq_msg_t parts[LOOP_MAX_PARTS];
    size_t n = 0, bytes = 0;
    bool too_many = false, broken = false;
    for (;;) {
        zmq_msg_t extra, *m = n < LOOP_MAX_PARTS ? &parts[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->sock, ZMQ_DONTWAIT) < 0) {
            /* EAGAIN on the first frame: ZMQ_EVENTS raced; later frames of a
             * message are atomic, so anything else means the socket is gone. */
            zmq_msg_close(m);
            broken = n > 0;
            break;
        }
        bytes += zmq_msg_size(m);
        int more = zmq_msg_more(m);
        if (m == &extra) {
            too_many = true;
            zmq_msg_close(m);
        } else {
            n++;
        }
        if (!more) break;
    }
    if (n == 0) return;
    if (too_many || broken) {
        if (too_many) metrics_counter_inc(z->loop->rej_parts);
    } else {
        metrics_counter_inc(z->msgs_in);
        metrics_counter_add(z->bytes_in, (double)bytes);
        z->on_msg(z, parts, n, z->ud);
    }
    for (size_t i = 0; i < n; i++) zmq_msg_close(&parts[i]);
}

/* Dispatch while ZMQ_EVENTS says so, at most LOOP_DRAIN_BUDGET callbacks.
 * Returns true when the budget ran out with work left. */
static bool zsock_drain(loop_zsock_t *z) {
    for (int budget = LOOP_DRAIN_BUDGET;;) {
        if (z->closing) return false;
        int ev = 0;
        size_t sz = sizeof ev;
        if (zmq_getsockopt(z->sock, ZMQ_EVENTS, &ev, &sz) != 0)
            return errno == EINTR; // a signal: look again next iteration; else the context is gone
        bool out = (ev & ZMQ_POLLOUT) && z->on_writable;
        if (!out && !(ev & ZMQ_POLLIN)) return false;
        if (budget-- == 0) return true;
        if (out) {
            loop_writable_fn fn = z->on_writable;
            z->on_writable = NULL;
            fn(z, z->wud);
        } else {
            zsock_recv_one(z);
        }
    }
}

static void poll_cb(uv_poll_t *h, int status, int events) {
    (void)status, (void)events; // on error ZMQ_EVENTS tells the truth anyway
    loop_zsock_t *z = h->data;
    if (zsock_drain(z)) idle_start(z->loop);
}

static void check_cb(uv_check_t *h) {
    loop_t *l = h->data;
    idle_stop(l); // restarted below by a spent budget, or by any send
    for (loop_zsock_t *z = l->zsocks; z; z = z->next)
        if (!z->closing && zsock_drain(z)) idle_start(l);
}

static void zsock_close_cb(uv_handle_t *h) {
    loop_zsock_t *z = h->data;
    loop_t *l = z->loop;
    if (z->prev)
        z->prev->next = z->next;
    else
        l->zsocks = z->next;
    if (z->next) z->next->prev = z->prev;
    free(z);
}

static void zsock_counters(loop_zsock_t *z, const char *queue) {
    loop_t *l = z->loop;
    if (!l->f_msgs || !queue) return;
    /* a failed lookup (too many queues) leaves the handle NULL: not counted */
    metrics_counter_get(l->f_msgs, (const char *[]){queue, "in"}, &z->msgs_in);
    metrics_counter_get(l->f_msgs, (const char *[]){queue, "out"}, &z->msgs_out);
    metrics_counter_get(l->f_bytes, (const char *[]){queue, "in"}, &z->bytes_in);
    metrics_counter_get(l->f_bytes, (const char *[]){queue, "out"}, &z->bytes_out);
}

rlhf_err_t loop_zsock_add(loop_t *l, void *sock, const char *queue, loop_msg_fn on_msg, void *ud, loop_zsock_t **out) {
    *out = NULL;
    if (!l || !sock || !on_msg) return RLHF_EINVAL;
    int fd = -1;
    size_t sz = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &sz) != 0 || fd < 0) return RLHF_EINVAL;
    loop_zsock_t *z = calloc(1, sizeof *z);
    if (!z) return RLHF_ENOMEM;
    z->loop = l;
    z->sock = sock;
    z->on_msg = on_msg;
    z->ud = ud;
    if (uv_poll_init(&l->uv, &z->poll, fd) != 0) {
        free(z);
        return RLHF_EIO;
    }
    z->poll.data = z;
    z->next = l->zsocks; // at the head: a walk in progress does not see it
    if (l->zsocks) l->zsocks->prev = z;
    l->zsocks = z;
    if (uv_poll_start(&z->poll, UV_READABLE, poll_cb) != 0) {
        z->closing = true;
        uv_close((uv_handle_t *)&z->poll, zsock_close_cb);
        return RLHF_EIO;
    }
    zsock_counters(z, queue);
    idle_start(l); // messages may have arrived before the poll was armed
    *out = z;
    return RLHF_OK;
}

void loop_zsock_remove(loop_zsock_t **p) {
    if (!p || !*p) return;
    loop_zsock_t *z = *p;
    *p = NULL;
    if (z->closing) return;
    z->closing = true;
    uv_close((uv_handle_t *)&z->poll, zsock_close_cb);
}

void *loop_zsock_socket(loop_zsock_t *z) {
    return z->sock;
}

loop_t *loop_zsock_loop(loop_zsock_t *z) {
    return z->loop;
}

void loop_zsock_kick(loop_zsock_t *z) {
    if (z && !z->closing) idle_start(z->loop);
}

void loop_zsock_want_writable(loop_zsock_t *z, loop_writable_fn fn, void *ud) {
    z->on_writable = fn;
    z->wud = ud;
    loop_zsock_kick(z);
}

rlhf_err_t loop_zsock_send(loop_zsock_t *z, zmq_msg_t *parts, size_t nparts) {
    size_t bytes = 0, i = 0;
    int err = 0;
    if (!z || z->closing || nparts == 0) {
        err = EINVAL;
        goto fail;
    }
    for (size_t k = 0; k < nparts; k++) bytes += zmq_msg_size(&parts[k]);
    for (; i < nparts; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < nparts ? ZMQ_SNDMORE : 0);
        int rc;
        while ((rc = zmq_msg_send(&parts[i], z->sock, flags)) < 0 && errno == EINTR) {
        }
        if (rc < 0) {
            err = errno;
            goto fail;
        }
    }
    metrics_counter_inc(z->msgs_out);
    metrics_counter_add(z->bytes_out, (double)bytes);
    loop_zsock_kick(z);
    return RLHF_OK;
fail:
    for (; i < nparts; i++) {
        zmq_msg_close(&parts[i]);
        zmq_msg_init(&parts[i]);
    }
    loop_zsock_kick(z);
    errno = err;
    return err == EINVAL ? RLHF_EINVAL : RLHF_EIO;
}

rlhf_err_t loop_zsock_send_bufs(loop_zsock_t *z, const void *const *bufs, const size_t *lens, size_t nbufs) {
    zmq_msg_t parts[LOOP_MAX_PARTS];
    if (nbufs == 0 || nbufs > LOOP_MAX_PARTS) {
        errno = EINVAL;
        return RLHF_EINVAL;
    }
    for (size_t i = 0; i < nbufs; i++) {
        if (zmq_msg_init_size(&parts[i], lens[i]) != 0) {
            for (size_t k = 0; k < i; k++) zmq_msg_close(&parts[k]);
            errno = ENOMEM;
            return RLHF_ENOMEM;
        }
        if (lens[i]) memcpy(zmq_msg_data(&parts[i]), bufs[i], lens[i]);
    }
    return loop_zsock_send(z, parts, nbufs);
}

/* ---- timers ---- */

static void timer_cb(uv_timer_t *h) {
    loop_timer_t *t = h->data;
    t->fn(t, t->ud);
}

static void timer_close_cb(uv_handle_t *h) {
    loop_timer_t *t = h->data;
    loop_t *l = t->loop;
    if (t->prev)
        t->prev->next = t->next;
    else
        l->timers = t->next;
    if (t->next) t->next->prev = t->prev;
    free(t);
}

rlhf_err_t loop_timer_new(loop_t *l, loop_timer_fn fn, void *ud, loop_timer_t **out) {
    *out = NULL;
    if (!l || !fn) return RLHF_EINVAL;
    loop_timer_t *t = calloc(1, sizeof *t);
    if (!t) return RLHF_ENOMEM;
    uv_timer_init(&l->uv, &t->h); // cannot fail
    t->h.data = t;
    t->loop = l;
    t->fn = fn;
    t->ud = ud;
    t->next = l->timers;
    if (l->timers) l->timers->prev = t;
    l->timers = t;
    *out = t;
    return RLHF_OK;
}

void loop_timer_start(loop_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms) {
    if (t && !t->closing) uv_timer_start(&t->h, timer_cb, timeout_ms, repeat_ms);
}

void loop_timer_stop(loop_timer_t *t) {
    if (t && !t->closing) uv_timer_stop(&t->h);
}

void loop_timer_ref(loop_timer_t *t, bool ref) {
    if (!t || t->closing) return;
    if (ref)
        uv_ref((uv_handle_t *)&t->h);
    else
        uv_unref((uv_handle_t *)&t->h);
}

void loop_timer_destroy(loop_timer_t **p) {
    if (!p || !*p) return;
    loop_timer_t *t = *p;
    *p = NULL;
    if (t->closing) return;
    t->closing = true;
    uv_close((uv_handle_t *)&t->h, timer_close_cb);
}

/* ---- workers ---- */

static void *worker_main(void *arg) {
    loop_t *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !l->todo_head) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        job_t *j = l->todo_head;
        l->todo_head = j->next;
        if (!l->todo_head) l->todo_tail = NULL;
        pthread_mutex_unlock(&l->mu);
        j->work(j->arg);
        pthread_mutex_lock(&l->mu);
        queue_push(&l->done_head, &l->done_tail, j);
        uv_async_send(&l->async); // thread-safe; coalesces
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Run finished jobs' done callbacks and posts; true if there were any. */
static bool run_done(loop_t *l) {
    pthread_mutex_lock(&l->mu);
    job_t *list = l->done_head;
    l->done_head = l->done_tail = NULL;
    pthread_mutex_unlock(&l->mu);
    bool any = list != NULL;
    while (list) {
        job_t *j = list;
        list = j->next;
        if (j->work) {
            l->pending--;
            j->done(l, j->arg, false);
        } else {
            j->post(l, j->arg);
        }
        free(j);
    }
    async_update_ref(l);
    return any;
}

static void async_cb(uv_async_t *h) {
    loop_t *l = h->data;
    run_done(l);
    if (atomic_exchange(&l->stop_requested, false)) uv_stop(&l->uv);
}

rlhf_err_t loop_submit(loop_t *l, loop_work_fn work, loop_done_fn done, void *arg) {
    if (!l || !work || !done) return RLHF_EINVAL;
    job_t *j = calloc(1, sizeof *j);
    if (!j) return RLHF_ENOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&l->mu);
    queue_push(&l->todo_head, &l->todo_tail, j);
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    l->pending++;
    async_update_ref(l);
    return RLHF_OK;
}

int loop_pending_jobs(loop_t *l) {
    return l->pending;
}

rlhf_err_t loop_post(loop_t *l, loop_post_fn fn, void *arg) {
    if (!l || !fn) return RLHF_EINVAL;
    job_t *j = calloc(1, sizeof *j);
    if (!j) return RLHF_ENOMEM;
    j->post = fn;
    j->arg = arg;
    pthread_mutex_lock(&l->mu);
    queue_push(&l->done_head, &l->done_tail, j);
    pthread_mutex_unlock(&l->mu);
    uv_async_send(&l->async);
    return RLHF_OK;
}

/* ---- signals ---- */

static void signal_cb(uv_signal_t *h, int signum) {
    loop_t *l = h->data;
    if (++l->nsignals == 1) {
        if (l->on_drain)
            l->on_drain(l, signum, l->sig_ud);
        else
            loop_stop(l);
    } else if (l->on_force) {
        l->on_force(l, signum, l->sig_ud);
    } else {
        static const char msg[] = "second signal: exiting now\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(128 + signum);
    }
}

rlhf_err_t loop_catch_signals(loop_t *l, loop_signal_fn on_drain, loop_signal_fn on_force, void *ud) {
    if (!l) return RLHF_EINVAL;
    l->on_drain = on_drain;
    l->on_force = on_force;
    l->sig_ud = ud;
    if (l->signals_on) return RLHF_OK;
    if (uv_signal_init(&l->uv, &l->sigint) != 0) return RLHF_EIO;
    if (uv_signal_init(&l->uv, &l->sigterm) != 0) {
        uv_close((uv_handle_t *)&l->sigint, NULL);
        return RLHF_EIO;
    }
    l->sigint.data = l->sigterm.data = l;
    l->signals_on = true; // closed by loop_destroy from here on
    if (uv_signal_start(&l->sigint, signal_cb, SIGINT) != 0 || uv_signal_start(&l->sigterm, signal_cb, SIGTERM) != 0)
        return RLHF_EIO;
    uv_unref((uv_handle_t *)&l->sigint);
    uv_unref((uv_handle_t *)&l->sigterm);
    return RLHF_OK;
}

bool loop_draining(loop_t *l) {
    return l->nsignals > 0;
}

/* ---- the loop ---- */

rlhf_err_t loop_new(loop_t **out, const loop_config_t *cfg) {
    *out = NULL;
    loop_config_t c = cfg ? *cfg : (loop_config_t){0};
    if (c.nworkers <= 0) c.nworkers = 1;
    rlhf_err_t rc = RLHF_ENOMEM;
    bool uv_ok = false, mu_ok = false, cv_ok = false;
    loop_t *l = calloc(1, sizeof *l);
    if (!l) return RLHF_ENOMEM;
    l->metrics = c.metrics;
    atomic_init(&l->stop_requested, false);

    if (l->metrics) {
        metrics_family_t *rej;
        if ((rc = metrics_counter_family(l->metrics, "rlhf_messages_total",
                                         "ZeroMQ messages sent (out) and received (in), by queue.", "queue,direction",
                                         &l->f_msgs)) != RLHF_OK ||
            (rc = metrics_counter_family(l->metrics, "rlhf_bytes_total",
                                         "ZeroMQ payload bytes sent (out) and received (in), by queue.",
                                         "queue,direction", &l->f_bytes)) != RLHF_OK ||
            (rc = metrics_counter_family(l->metrics, "rlhf_messages_rejected_total",
                                         "Messages dropped as malformed or over a limit, by reason.", "reason",
                                         &rej)) != RLHF_OK ||
            (rc = metrics_counter_get(rej, (const char *[]){"too_many_parts"}, &l->rej_parts)) != RLHF_OK)
            goto fail;
    }

    rc = RLHF_EIO;
    if (uv_loop_init(&l->uv) != 0) goto fail;
    uv_ok = true;
    if (pthread_mutex_init(&l->mu, NULL) != 0) goto fail;
    mu_ok = true;
    if (pthread_cond_init(&l->cv, NULL) != 0) goto fail;
    cv_ok = true;

    /* internal handles: none of them keeps the loop alive by itself */
    uv_check_init(&l->uv, &l->check);
    l->check.data = l;
    uv_check_start(&l->check, check_cb);
    uv_unref((uv_handle_t *)&l->check);
    uv_idle_init(&l->uv, &l->idle);
    l->idle.data = l;
    uv_unref((uv_handle_t *)&l->idle);
    if (uv_async_init(&l->uv, &l->async, async_cb) != 0) goto fail_handles;
    l->async.data = l;
    uv_unref((uv_handle_t *)&l->async);

    l->threads = calloc((size_t)c.nworkers, sizeof *l->threads);
    if (!l->threads) {
        rc = RLHF_ENOMEM;
        goto fail_threads;
    }
    /* workers block every signal: SIGINT/SIGTERM reach libuv's handler on
     * another thread, and compute is not interrupted by EINTR */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (; l->nthreads < c.nworkers; l->nthreads++)
        if (pthread_create(&l->threads[l->nthreads], NULL, worker_main, l) != 0) break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (l->nthreads < c.nworkers) goto fail_threads;

    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
    *out = l;
    return RLHF_OK;

fail_threads:
    loop_destroy(&l); // joins what started and closes the handles
    return rc;
fail_handles:
    uv_close((uv_handle_t *)&l->check, NULL);
    uv_close((uv_handle_t *)&l->idle, NULL);
    uv_run(&l->uv, UV_RUN_NOWAIT);
fail:
    if (cv_ok) pthread_cond_destroy(&l->cv);
    if (mu_ok) pthread_mutex_destroy(&l->mu);
    if (uv_ok) uv_loop_close(&l->uv);
    free(l);
    return rc;
}

uv_loop_t *loop_uv(loop_t *l) {
    return &l->uv;
}

metrics_t *loop_metrics(loop_t *l) {
    return l->metrics;
}

rlhf_err_t loop_run(loop_t *l) {
    uv_run(&l->uv, UV_RUN_DEFAULT);
    return RLHF_OK;
}

void loop_stop(loop_t *l) {
    atomic_store(&l->stop_requested, true);
    uv_async_send(&l->async);
}

uint64_t loop_now_ms(loop_t *l) {
    return uv_now(&l->uv);
}

static void close_foreign(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void loop_destroy(loop_t **p) {
    if (!p || !*p) return;
    loop_t *l = *p;
    *p = NULL;

    pthread_mutex_lock(&l->mu);
    l->quit = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
    free(l->threads);

    /* finished work first, then cancel what never started; callbacks may
     * submit or post again, so repeat until both queues stay empty */
    for (;;) {
        bool any = run_done(l);
        pthread_mutex_lock(&l->mu);
        job_t *j = l->todo_head;
        if (j) {
            l->todo_head = j->next;
            if (!l->todo_head) l->todo_tail = NULL;
        }
        pthread_mutex_unlock(&l->mu);
        if (j) {
            l->pending--;
            j->done(l, j->arg, true);
            free(j);
        } else if (!any) {
            break;
        }
    }

    for (loop_zsock_t *z = l->zsocks; z; z = z->next) {
        if (!z->closing) {
            z->closing = true;
            uv_close((uv_handle_t *)&z->poll, zsock_close_cb);
        }
    }
    for (loop_timer_t *t = l->timers; t; t = t->next) {
        if (!t->closing) {
            t->closing = true;
            uv_close((uv_handle_t *)&t->h, timer_close_cb);
        }
    }
    uv_walk(&l->uv, close_foreign, NULL); // internal handles and whatever others left
    while (uv_run(&l->uv, UV_RUN_DEFAULT) != 0) {
    }
    if (uv_loop_close(&l->uv) != 0) fprintf(stderr, "loop_destroy: libuv loop still busy\n");
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    free(l);
}
