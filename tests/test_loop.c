/*
 * test_loop.c - the event loop: ZeroMQ sockets under load, timers, worker
 * jobs, signals.
 *
 *   flood        100k PUSH -> PULL messages over tcp loopback, sent in bursts
 *                by another thread while the loop drains: all arrive, in
 *                order, and a watchdog sees no stall (the ZMQ_FD edge trap).
 *   dealer       DEALER <-> ROUTER both on the loop, 100k round trips with a
 *                window of 64: replies are sent from the ROUTER's callback,
 *                and so is the DEALER's next request (a send on a receiving
 *                socket outside its own drain); the first ones from a timer.
 *   swallow      a reply waits in a DEALER (its ZMQ_FD signalled), then a
 *                timer sends on that DEALER before the poll: the send clears
 *                ZMQ_FD, and the reply must still be delivered.
 *   writable     the one-shot writable callback fires once a PUSH gets a peer.
 *   parts        a message with too many frames is dropped and counted, the
 *                next one arrives; removing a socket inside its own callback.
 *   timers       one-shot, repeating, stop, destroy inside the callback.
 *   latency      a 500 ms job on the worker does not delay a 5 ms timer or a
 *                zmq echo answered by the loop by more than 50 ms.
 *   cancel       jobs still queued at loop_destroy get done(cancelled).
 *   signals      SIGTERM -> drain callback; a second signal -> force callback,
 *                or without one, exit status 128 + signum (in a child).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/loop.h"
#include "common/metrics.h"

static double now_s(void) {
    return (double)uv_hrtime() * 1e-9;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* bind to tcp://127.0.0.1:* and return the endpoint actually bound */
static void *bind_any(void *ctx, int type, char *endpoint, size_t len) {
    void *s = zmq_socket(ctx, type);
    assert_non_null(s);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(s, "tcp://127.0.0.1:*"), 0);
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &len), 0);
    return s;
}

static void *connect_to(void *ctx, int type, const char *endpoint) {
    void *s = zmq_socket(ctx, type);
    assert_non_null(s);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_connect(s, endpoint), 0);
    return s;
}

/* ---- a watchdog: fails the run when a counter stops moving ---- */

typedef struct {
    loop_t *loop;
    const long *progress; // watched
    long last, target;
    double last_change;
    double stall_s; // allowed silence
    bool stalled;
} watchdog_t;

static void watchdog_tick(loop_timer_t *t, void *ud) {
    (void)t;
    watchdog_t *w = ud;
    if (*w->progress != w->last) {
        w->last = *w->progress;
        w->last_change = now_s();
    } else if (*w->progress < w->target && now_s() - w->last_change > w->stall_s) {
        w->stalled = true;
        loop_stop(w->loop);
    }
}

/* ---- flood: PUSH (thread) -> PULL (loop) ---- */

#define FLOOD_N 100000

typedef struct {
    void *ctx;
    char endpoint[256];
} sender_arg_t;

static void *flood_sender(void *p) {
    sender_arg_t *a = p;
    void *push = zmq_socket(a->ctx, ZMQ_PUSH);
    int linger = 2000, timeout = 5000; // a stalled receiver must not hang the test
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(push, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    zmq_connect(push, a->endpoint);
    unsigned seed = 12345;
    uint32_t seq = 0;
    char payload[256];
    memset(payload, 'x', sizeof payload);
    while (seq < FLOOD_N) {
        /* bursts of 1..2000 messages, then a pause of 0..2 ms, so both a
         * fast-draining and an already-idle loop get woken */
        int burst = 1 + (int)(rand_r(&seed) % 2000);
        for (int i = 0; i < burst && seq < FLOOD_N; i++, seq++) {
            memcpy(payload, &seq, sizeof seq);
            size_t len = sizeof seq + (size_t)(rand_r(&seed) % 200);
            if (zmq_send(push, payload, len, 0) < 0) goto out; // blocks at the high-water mark
        }
        sleep_us(rand_r(&seed) % 2000);
    }
out:
    zmq_close(push);
    return NULL;
}

typedef struct {
    loop_t *loop;
    long received;
    long out_of_order;
    uint32_t next;
} flood_t;

static void flood_msg(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    flood_t *f = ud;
    uint32_t seq = UINT32_MAX;
    if (n == 1 && zmq_msg_size(&parts[0]) >= sizeof seq) memcpy(&seq, zmq_msg_data(&parts[0]), sizeof seq);
    if (seq != f->next) f->out_of_order++;
    f->next = seq + 1;
    if (++f->received == FLOOD_N) loop_stop(f->loop);
}

static void test_flood(void **state) {
    (void)state;
    metrics_t *m = NULL;
    loop_t *l = NULL;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(loop_new(&l, &(loop_config_t){.metrics = m}), RLHF_OK);
    void *ctx = zmq_ctx_new();
    sender_arg_t sa = {ctx, ""};
    void *pull = bind_any(ctx, ZMQ_PULL, sa.endpoint, sizeof sa.endpoint);
    flood_t f = {l, 0, 0, 0};
    loop_zsock_t *z;
    assert_int_equal(loop_zsock_add(l, pull, "flood", flood_msg, &f, &z), RLHF_OK);
    watchdog_t w = {l, &f.received, 0, FLOOD_N, now_s(), 3.0, false};
    loop_timer_t *wt;
    assert_int_equal(loop_timer_new(l, watchdog_tick, &w, &wt), RLHF_OK);
    loop_timer_start(wt, 100, 100);
    loop_timer_ref(wt, false);

    pthread_t th;
    double t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, flood_sender, &sa), 0);
    loop_run(l);
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    print_message("flood: %ld/%d messages in %.2f s (%.0f msg/s), stalled=%d\n", f.received, FLOOD_N, dt,
                  f.received / dt, w.stalled);
    assert_false(w.stalled);
    assert_int_equal(f.received, FLOOD_N);
    assert_int_equal(f.out_of_order, 0);

    metrics_family_t *fam;
    metrics_counter_t *in;
    assert_int_equal(metrics_counter_family(m, "rlhf_messages_total", "", "queue,direction", &fam), RLHF_OK);
    assert_int_equal(metrics_counter_get(fam, (const char *[]){"flood", "in"}, &in), RLHF_OK);
    assert_true(metrics_counter_value(in) == FLOOD_N);

    loop_timer_destroy(&wt);
    loop_zsock_remove(&z);
    assert_null(z);
    loop_destroy(&l);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    metrics_destroy(&m);
}

/* ---- dealer/router, all sends from the loop ---- */

#define RT_N      100000
#define RT_WINDOW 64

typedef struct {
    loop_t *loop;
    loop_zsock_t *router, *dealer;
    long sent, replies, bad;
} rt_t;

static void dealer_send(rt_t *r) {
    uint32_t seq = (uint32_t)r->sent;
    const void *bufs[1] = {&seq};
    size_t lens[1] = {sizeof seq};
    if (loop_zsock_send_bufs(r->dealer, bufs, lens, 1) == RLHF_OK)
        r->sent++;
    else
        r->bad++;
}

static void router_msg(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    rt_t *r = ud;
    if (n != 2) {
        r->bad++;
        return;
    }
    zmq_msg_t out[2];
    zmq_msg_init(&out[0]);
    zmq_msg_init(&out[1]);
    zmq_msg_move(&out[0], &parts[0]); // identity
    zmq_msg_move(&out[1], &parts[1]); // payload, echoed
    if (loop_zsock_send(z, out, 2) != RLHF_OK) r->bad++;
    /* the next request goes out on the DEALER from the ROUTER's callback:
     * a send outside the DEALER's own drain, which may swallow its ZMQ_FD
     * edge while replies are arriving */
    if (r->sent < RT_N) dealer_send(r);
}

static void dealer_msg(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z;
    rt_t *r = ud;
    if (n != 1 || zmq_msg_size(&parts[0]) != sizeof(uint32_t)) r->bad++;
    if (++r->replies == RT_N) loop_stop(r->loop);
}

static void rt_start(loop_timer_t *t, void *ud) {
    (void)t;
    rt_t *r = ud;
    for (int i = 0; i < RT_WINDOW; i++) dealer_send(r);
}

static void test_dealer_router(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    void *ctx = zmq_ctx_new();
    char ep[256];
    void *router = bind_any(ctx, ZMQ_ROUTER, ep, sizeof ep);
    void *dealer = connect_to(ctx, ZMQ_DEALER, ep);
    rt_t r = {.loop = l};
    assert_int_equal(loop_zsock_add(l, router, "score", router_msg, &r, &r.router), RLHF_OK);
    assert_int_equal(loop_zsock_add(l, dealer, "work", dealer_msg, &r, &r.dealer), RLHF_OK);
    loop_timer_t *start, *wt;
    assert_int_equal(loop_timer_new(l, rt_start, &r, &start), RLHF_OK);
    loop_timer_start(start, 10, 0);
    watchdog_t w = {l, &r.replies, 0, RT_N, now_s(), 3.0, false};
    assert_int_equal(loop_timer_new(l, watchdog_tick, &w, &wt), RLHF_OK);
    loop_timer_start(wt, 100, 100);
    loop_timer_ref(wt, false);
    double t0 = now_s();
    loop_run(l);
    double dt = now_s() - t0;
    print_message("dealer/router: %ld round trips in %.2f s (%.0f/s), stalled=%d\n", r.replies, dt, r.replies / dt,
                  w.stalled);
    assert_false(w.stalled);
    assert_int_equal(r.replies, RT_N);
    assert_int_equal(r.bad, 0);
    loop_destroy(&l); // also frees the registrations and timers still open
    zmq_close(dealer);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

/* ---- a send that swallows the edge, deterministically ---- */

typedef struct {
    loop_t *loop;
    loop_zsock_t *d;
    long got;
    bool timed_out;
} edge_t;

static void edge_msg(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z, (void)parts, (void)n;
    edge_t *e = ud;
    e->got++;
    loop_stop(e->loop);
}

static void edge_stop(loop_timer_t *t, void *ud) {
    (void)t;
    loop_stop(((edge_t *)ud)->loop);
}

static void edge_timeout(loop_timer_t *t, void *ud) {
    (void)t;
    edge_t *e = ud;
    e->timed_out = true;
    loop_stop(e->loop);
}

/* Runs in the timers phase, before the poll: the send processes the socket's
 * command mailbox, which clears ZMQ_FD although the reply is waiting. */
static void edge_send(loop_timer_t *t, void *ud) {
    (void)t;
    edge_t *e = ud;
    const void *bufs[1] = {"x"};
    size_t lens[1] = {1};
    loop_zsock_send_bufs(e->d, bufs, lens, 1);
}

static void test_send_swallows_edge(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    void *ctx = zmq_ctx_new();
    char ep[256];
    void *router = bind_any(ctx, ZMQ_ROUTER, ep, sizeof ep); // driven by hand, not on the loop
    void *dealer = connect_to(ctx, ZMQ_DEALER, ep);
    edge_t e = {.loop = l};
    assert_int_equal(loop_zsock_add(l, dealer, NULL, edge_msg, &e, &e.d), RLHF_OK);
    const void *bufs[1] = {"hello"};
    size_t lens[1] = {5};
    assert_int_equal(loop_zsock_send_bufs(e.d, bufs, lens, 1), RLHF_OK);
    char id[256], buf[16];
    int idlen = zmq_recv(router, id, sizeof id, 0);
    assert_true(idlen > 0);
    assert_int_equal(zmq_recv(router, buf, sizeof buf, 0), 5);

    /* let the loop find the dealer empty, so its reader goes to sleep */
    loop_timer_t *t;
    assert_int_equal(loop_timer_new(l, edge_stop, &e, &t), RLHF_OK);
    loop_timer_start(t, 20, 0);
    loop_run(l);
    assert_int_equal(e.got, 0);

    /* the reply arrives while the loop is not running: ZMQ_FD is readable */
    zmq_send(router, id, (size_t)idlen, ZMQ_SNDMORE);
    zmq_send(router, "reply", 5, 0);
    sleep_us(50000);

    loop_timer_t *send, *timeout;
    assert_int_equal(loop_timer_new(l, edge_send, &e, &send), RLHF_OK);
    assert_int_equal(loop_timer_new(l, edge_timeout, &e, &timeout), RLHF_OK);
    loop_timer_start(send, 0, 0);
    loop_timer_start(timeout, 1000, 0);
    loop_run(l);
    assert_false(e.timed_out);
    assert_int_equal(e.got, 1);
    loop_destroy(&l);
    zmq_close(dealer);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

/* ---- writable: a PUSH with no peer becomes writable once one connects ---- */

typedef struct {
    loop_t *loop;
    void *ctx, *pull;
    char endpoint[256];
    bool connected, early, timed_out;
    int writable;
} wr_t;

static void wr_writable(loop_zsock_t *z, void *ud) {
    wr_t *w = ud;
    if (!w->connected) w->early = true;
    w->writable++;
    const void *bufs[1] = {"hi"};
    size_t lens[1] = {2};
    loop_zsock_send_bufs(z, bufs, lens, 1);
    loop_stop(w->loop);
}

static void wr_connect(loop_timer_t *t, void *ud) {
    (void)t;
    wr_t *w = ud;
    w->pull = connect_to(w->ctx, ZMQ_PULL, w->endpoint);
    w->connected = true;
}

static void wr_timeout(loop_timer_t *t, void *ud) {
    (void)t;
    wr_t *w = ud;
    w->timed_out = true;
    loop_stop(w->loop);
}

static void ignore_msg(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)z, (void)parts, (void)n, (void)ud;
}

static void test_writable(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    wr_t w = {.loop = l, .ctx = zmq_ctx_new()};
    void *push = bind_any(w.ctx, ZMQ_PUSH, w.endpoint, sizeof w.endpoint);
    loop_zsock_t *z;
    assert_int_equal(loop_zsock_add(l, push, NULL, ignore_msg, &w, &z), RLHF_OK);
    loop_zsock_want_writable(z, wr_writable, &w);
    loop_timer_t *c, *t;
    assert_int_equal(loop_timer_new(l, wr_connect, &w, &c), RLHF_OK);
    assert_int_equal(loop_timer_new(l, wr_timeout, &w, &t), RLHF_OK);
    loop_timer_start(c, 50, 0);
    loop_timer_start(t, 3000, 0);
    loop_run(l);
    assert_false(w.timed_out);
    assert_false(w.early);
    assert_int_equal(w.writable, 1);
    char buf[8];
    assert_int_equal(zmq_recv(w.pull, buf, sizeof buf, 0), 2);
    loop_destroy(&l);
    zmq_close(w.pull);
    zmq_close(push);
    zmq_ctx_term(w.ctx);
}

/* ---- frames limit, removal inside a callback ---- */

typedef struct {
    loop_t *loop;
    loop_zsock_t *z;
    int got;
    size_t last_parts;
} parts_t;

static void parts_msg(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    parts_t *p = ud;
    assert_ptr_equal(z, p->z);
    (void)parts;
    p->got++;
    p->last_parts = n;
    loop_zsock_remove(&p->z); // further messages must not be delivered
    loop_stop(p->loop);
}

static void test_parts_and_remove(void **state) {
    (void)state;
    metrics_t *m = NULL;
    loop_t *l = NULL;
    assert_int_equal(metrics_new(&m), RLHF_OK);
    assert_int_equal(loop_new(&l, &(loop_config_t){.metrics = m}), RLHF_OK);
    void *ctx = zmq_ctx_new();
    char ep[256];
    void *pull = bind_any(ctx, ZMQ_PULL, ep, sizeof ep);
    void *push = connect_to(ctx, ZMQ_PUSH, ep);
    /* queued before the registration: must still be seen */
    for (int i = 0; i < LOOP_MAX_PARTS + 4; i++) zmq_send(push, "p", 1, i + 1 < LOOP_MAX_PARTS + 4 ? ZMQ_SNDMORE : 0);
    for (int i = 0; i < 3; i++) zmq_send(push, "ok", 2, ZMQ_SNDMORE);
    zmq_send(push, "end", 3, 0);
    zmq_send(push, "never", 5, 0);
    sleep_us(50000);
    parts_t p = {l, NULL, 0, 0};
    assert_int_equal(loop_zsock_add(l, pull, "parts", parts_msg, &p, &p.z), RLHF_OK);
    loop_run(l);
    assert_int_equal(p.got, 1);
    assert_int_equal(p.last_parts, 4);
    assert_null(p.z);
    metrics_family_t *rej;
    metrics_counter_t *c;
    assert_int_equal(metrics_counter_family(m, "rlhf_messages_rejected_total", "", "reason", &rej), RLHF_OK);
    assert_int_equal(metrics_counter_get(rej, (const char *[]){"too_many_parts"}, &c), RLHF_OK);
    assert_true(metrics_counter_value(c) == 1);
    /* run again: the removed socket stays silent, the loop has nothing left */
    loop_run(l);
    assert_int_equal(p.got, 1);
    loop_destroy(&l);
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(ctx);
    metrics_destroy(&m);
}

/* ---- timers ---- */

typedef struct {
    int once, repeat, stopped;
    double t0, once_at;
    loop_timer_t *rep, *stop_me;
} timers_t;

static void on_once(loop_timer_t *t, void *ud) {
    (void)t;
    timers_t *s = ud;
    s->once++;
    s->once_at = now_s() - s->t0;
}

static void on_repeat(loop_timer_t *t, void *ud) {
    timers_t *s = ud;
    if (++s->repeat == 5) loop_timer_destroy(&s->rep); // inside its own callback
    assert_true(s->rep == NULL || s->rep == t);
}

static void on_stopped(loop_timer_t *t, void *ud) {
    (void)t;
    ((timers_t *)ud)->stopped++;
}

static void test_timers(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    timers_t s = {0};
    loop_timer_t *once;
    s.t0 = now_s();
    assert_int_equal(loop_timer_new(l, on_once, &s, &once), RLHF_OK);
    assert_int_equal(loop_timer_new(l, on_repeat, &s, &s.rep), RLHF_OK);
    assert_int_equal(loop_timer_new(l, on_stopped, &s, &s.stop_me), RLHF_OK);
    loop_timer_start(once, 30, 0);
    loop_timer_start(s.rep, 5, 5);
    loop_timer_start(s.stop_me, 10, 0);
    loop_timer_stop(s.stop_me);
    loop_run(l); // returns when no timer is left running
    assert_int_equal(s.once, 1);
    assert_true(s.once_at >= 0.025 && s.once_at < 0.5); // loop clock is cached, in ms
    assert_int_equal(s.repeat, 5);
    assert_null(s.rep);
    assert_int_equal(s.stopped, 0);
    loop_timer_destroy(&once);
    loop_destroy(&l); // frees stop_me
}

/* ---- latency while a worker computes ---- */

typedef struct {
    loop_t *loop;
    pthread_t loop_thread, work_thread;
    atomic_int job_running;
    int posts;
    bool done_on_loop, job_done;
    double last_tick, max_gap, ticks_during_job;
    double sink; // the busy job's result, so it is not optimised away
    loop_zsock_t *router;
} lat_t;

static void count_post(loop_t *l, void *arg) {
    (void)l;
    ((lat_t *)arg)->posts++;
}

static void busy_job(void *arg) {
    lat_t *s = arg;
    s->work_thread = pthread_self();
    atomic_store(&s->job_running, 1);
    double t0 = now_s();
    volatile double x = 0;
    int posted = 0;
    while (now_s() - t0 < 0.5) { // 500 ms of CPU
        for (int i = 0; i < 10000; i++) x += i * 1e-9;
        if (posted < 3 && now_s() - t0 > 0.1 * (posted + 1)) { // progress reports to the loop thread
            loop_post(s->loop, count_post, s);
            posted++;
        }
    }
    s->sink = x;
    atomic_store(&s->job_running, 0);
}

static void busy_done(loop_t *l, void *arg, bool cancelled) {
    (void)l;
    lat_t *s = arg;
    s->done_on_loop = pthread_equal(pthread_self(), s->loop_thread) && !cancelled;
    s->job_done = true;
}

static void lat_tick(loop_timer_t *t, void *ud) {
    (void)t;
    lat_t *s = ud;
    double now = now_s();
    if (atomic_load(&s->job_running)) {
        double gap = now - s->last_tick;
        if (gap > s->max_gap) s->max_gap = gap;
        s->ticks_during_job++;
    }
    s->last_tick = now;
}

static void lat_echo(loop_zsock_t *z, zmq_msg_t *parts, size_t n, void *ud) {
    (void)ud;
    if (n == 2) loop_zsock_send(z, parts, 2); // parts are ours to send: borrowed until return, consumed here
}

typedef struct {
    void *ctx;
    char endpoint[256];
    lat_t *s;
    double max_rtt;
    int pings;
} pinger_t;

static void *pinger(void *p) {
    pinger_t *a = p;
    void *d = zmq_socket(a->ctx, ZMQ_DEALER);
    int linger = 0, timeout = 2000;
    zmq_setsockopt(d, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(d, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(d, a->endpoint);
    /* wait for the job to start, then ping every 5 ms while it runs */
    while (!atomic_load(&a->s->job_running)) sleep_us(1000);
    while (atomic_load(&a->s->job_running)) {
        double t0 = now_s();
        char buf[16];
        zmq_send(d, "ping", 4, 0);
        if (zmq_recv(d, buf, sizeof buf, 0) != 4) {
            a->max_rtt = 1e9;
            break;
        }
        double rtt = now_s() - t0;
        if (rtt > a->max_rtt) a->max_rtt = rtt;
        a->pings++;
        sleep_us(5000);
    }
    zmq_close(d);
    return NULL;
}

static void lat_check_done(loop_timer_t *t, void *ud) {
    (void)t;
    lat_t *s = ud;
    if (s->job_done && s->posts == 3) loop_stop(s->loop);
}

static void test_worker_latency(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    void *ctx = zmq_ctx_new();
    pinger_t pa = {.ctx = ctx};
    void *router = bind_any(ctx, ZMQ_ROUTER, pa.endpoint, sizeof pa.endpoint);
    lat_t s = {.loop = l, .loop_thread = pthread_self()};
    atomic_init(&s.job_running, 0);
    pa.s = &s;
    assert_int_equal(loop_zsock_add(l, router, "echo", lat_echo, &s, &s.router), RLHF_OK);
    loop_timer_t *tick, *check;
    assert_int_equal(loop_timer_new(l, lat_tick, &s, &tick), RLHF_OK);
    assert_int_equal(loop_timer_new(l, lat_check_done, &s, &check), RLHF_OK);
    s.last_tick = now_s();
    loop_timer_start(tick, 5, 5);
    loop_timer_start(check, 20, 20);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, pinger, &pa), 0);
    assert_int_equal(loop_submit(l, busy_job, busy_done, &s), RLHF_OK);
    assert_int_equal(loop_pending_jobs(l), 1);
    assert_int_equal(loop_post(l, NULL, NULL), RLHF_EINVAL);
    loop_run(l);
    pthread_join(th, NULL);
    print_message("latency: timer max gap %.1f ms over %.0f ticks, zmq echo max rtt %.1f ms over %d pings\n",
                  s.max_gap * 1e3, s.ticks_during_job, pa.max_rtt * 1e3, pa.pings);
    assert_true(s.job_done);
    assert_true(s.done_on_loop);
    assert_false(pthread_equal(s.work_thread, s.loop_thread));
    assert_int_equal(loop_pending_jobs(l), 0);
    assert_true(s.ticks_during_job >= 20);
    assert_true(pa.pings >= 10);
    assert_true(s.max_gap < 0.005 + 0.050);
    assert_true(pa.max_rtt < 0.050);
    loop_destroy(&l);
    zmq_close(router);
    zmq_ctx_term(ctx);
}

/* ---- cancellation at destroy ---- */

static void sleepy(void *arg) {
    (void)arg;
    sleep_us(100000);
}

static void count_done(loop_t *l, void *arg, bool cancelled) {
    (void)l;
    int *counts = arg;
    counts[cancelled ? 1 : 0]++;
}

static void test_cancel(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    int counts[2] = {0, 0};
    for (int i = 0; i < 4; i++) assert_int_equal(loop_submit(l, sleepy, count_done, counts), RLHF_OK);
    assert_int_equal(loop_submit(l, NULL, count_done, counts), RLHF_EINVAL);
    sleep_us(20000); // the worker has taken the first job
    loop_destroy(&l);
    assert_int_equal(counts[0] + counts[1], 4);
    assert_true(counts[0] >= 1);
    assert_true(counts[1] >= 2);
}

/* ---- signals ---- */

typedef struct {
    loop_t *loop;
    int drains, forces, drain_sig, force_sig;
} sigstate_t;

static void on_drain(loop_t *l, int signum, void *ud) {
    sigstate_t *s = ud;
    s->drains++;
    s->drain_sig = signum;
    assert_true(loop_draining(l));
}

static void on_force(loop_t *l, int signum, void *ud) {
    sigstate_t *s = ud;
    s->forces++;
    s->force_sig = signum;
    loop_stop(l);
}

static void raise_term(loop_timer_t *t, void *ud) {
    (void)t, (void)ud;
    raise(SIGTERM);
}

static void raise_int(loop_timer_t *t, void *ud) {
    (void)t, (void)ud;
    raise(SIGINT);
}

static void test_signals(void **state) {
    (void)state;
    loop_t *l = NULL;
    assert_int_equal(loop_new(&l, NULL), RLHF_OK);
    sigstate_t s = {.loop = l};
    assert_int_equal(loop_catch_signals(l, on_drain, on_force, &s), RLHF_OK);
    assert_false(loop_draining(l));
    loop_timer_t *a, *b;
    assert_int_equal(loop_timer_new(l, raise_term, &s, &a), RLHF_OK);
    assert_int_equal(loop_timer_new(l, raise_int, &s, &b), RLHF_OK);
    loop_timer_start(a, 10, 0);
    loop_timer_start(b, 60, 0);
    loop_run(l);
    assert_int_equal(s.drains, 1);
    assert_int_equal(s.drain_sig, SIGTERM);
    assert_int_equal(s.forces, 1);
    assert_int_equal(s.force_sig, SIGINT);
    assert_true(loop_draining(l));
    loop_destroy(&l);
}

/* Without on_force the second signal ends the process at once with
 * 128 + signum; checked in a child process. */
static void drain_noop(loop_t *l, int signum, void *ud) {
    (void)l, (void)signum, (void)ud;
}

static void test_signal_exit(void **state) {
    (void)state;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        loop_t *l = NULL;
        loop_timer_t *a, *b;
        if (loop_new(&l, NULL) != RLHF_OK || loop_catch_signals(l, drain_noop, NULL, NULL) != RLHF_OK ||
            loop_timer_new(l, raise_term, NULL, &a) != RLHF_OK || loop_timer_new(l, raise_term, NULL, &b) != RLHF_OK)
            _exit(1);
        loop_timer_start(a, 10, 0);
        loop_timer_start(b, 30, 0);
        loop_run(l);
        _exit(2); // not reached: the second SIGTERM exits
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGTERM);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_dealer_router),
        cmocka_unit_test(test_send_swallows_edge),
        cmocka_unit_test(test_writable),
        cmocka_unit_test(test_parts_and_remove),
        cmocka_unit_test(test_timers),
        cmocka_unit_test(test_worker_latency),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_signals),
        cmocka_unit_test(test_signal_exit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
