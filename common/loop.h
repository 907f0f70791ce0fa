/*
 * loop.h - the one event loop of a process: libuv driving ZeroMQ sockets,
 * timers, SIGINT/SIGTERM, and a worker thread for heavy compute.
 *
 * ZeroMQ sockets. A registered socket's ZMQ_FD is polled for readability with
 * uv_poll. ZMQ_FD is edge-triggered in spirit: it only says "ZMQ_EVENTS may
 * have changed", and every zmq call on the socket (recv, send, even reading
 * ZMQ_EVENTS) may consume that signal while messages stay queued. So the loop
 *   - drains while ZMQ_EVENTS reports ZMQ_POLLIN, after every wake-up;
 *   - re-checks every socket after each poll phase (uv_check), which covers
 *     sends made by any callback of that iteration;
 *   - after a send through loop_zsock_send (or loop_zsock_kick) keeps the next
 *     poll from blocking (uv_idle) so that check always runs;
 *   - drains at most LOOP_DRAIN_BUDGET messages per socket per iteration and
 *     then yields (idle again), so timers, HTTP and other sockets are served
 *     during a flood;
 *   - checks once right after registration, for messages that arrived before
 *     the poll was armed.
 * Each message (all its frames) is received by the loop and handed to the
 * socket's callback; frames beyond LOOP_MAX_PARTS drop the message (counted
 * as rlhf_messages_rejected_total{reason="too_many_parts"}). With a metrics
 * registry the loop counts rlhf_messages_total{queue,direction} and
 * rlhf_bytes_total{queue,direction} for every named socket.
 *
 * Threads. Everything here runs on the loop thread, except loop_post,
 * loop_stop (any thread) and the work functions given to loop_submit (a
 * worker thread owned by the loop). Work is done in FIFO order by
 * cfg.nworkers threads; its done callback runs back on the loop thread
 * (uv_async), so results meet the sockets there. The loop thread itself must
 * only do short things, so that a process busy training still answers
 * heartbeats, hands out work and serves /metrics within milliseconds.
 *
 * Signals. loop_catch_signals: the first SIGINT/SIGTERM calls on_drain (start
 * a graceful drain, then loop_stop when done); a second one calls on_force,
 * or _exit(128 + signum) when on_force is NULL. loop_new also sets SIGPIPE to
 * ignored if it was at its default, because a peer that closes a TCP
 * connection must not kill the process.
 *
 * What it deliberately is not: not a general reactor (no files, no child
 * processes, no DNS); zmq sockets are never touched off the loop thread.
 */
#ifndef RLHF_LOOP_H
#define RLHF_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include <zmq.h>

#include "common/error.h"
#include "common/metrics.h"

#define LOOP_MAX_PARTS    16  // frames per received message
#define LOOP_DRAIN_BUDGET 256 // messages per socket per loop iteration

typedef struct loop loop_t;
typedef struct loop_zsock loop_zsock_t; // a zmq socket registered with a loop
typedef struct loop_timer loop_timer_t;

typedef struct {
    metrics_t *metrics; // borrowed, may be NULL; must outlive the loop
    int nworkers;       // worker threads for loop_submit; 0 = 1
} loop_config_t;

/* A whole received message: parts[0..nparts-1] are borrowed and closed after
 * the callback returns; zmq_msg_move/zmq_msg_copy what must be kept, or hand
 * them to loop_zsock_send (which empties them). The callback may send on any
 * socket, remove any socket (this one too) and create or destroy timers. */
typedef void (*loop_msg_fn)(loop_zsock_t *z, zmq_msg_t *parts, size_t nparts, void *ud);
/* The socket reported ZMQ_POLLOUT after loop_zsock_want_writable (one shot). */
typedef void (*loop_writable_fn)(loop_zsock_t *z, void *ud);
typedef void (*loop_timer_fn)(loop_timer_t *t, void *ud);
/* Runs on a worker thread. */
typedef void (*loop_work_fn)(void *arg);
/* Runs on the loop thread after work(arg) returned, or with cancelled = true
 * when the loop was destroyed before the work started. Owns arg again. */
typedef void (*loop_done_fn)(loop_t *l, void *arg, bool cancelled);
/* Runs on the loop thread (loop_post). */
typedef void (*loop_post_fn)(loop_t *l, void *arg);
typedef void (*loop_signal_fn)(loop_t *l, int signum, void *ud);

/* New loop with its worker threads started; caller owns *out (loop_destroy).
 * cfg may be NULL. RLHF_ENOMEM, RLHF_EIO (libuv or pthread failure). */
rlhf_err_t loop_new(loop_t **out, const loop_config_t *cfg);

/* Stops and joins the workers (the running job finishes; queued jobs get
 * done(cancelled = true)), runs posted functions still queued, closes every
 * socket registration, timer and signal handler still open (handles to them
 * become invalid; the zmq sockets themselves stay open, owned by the caller)
 * and closes handles other modules left open (their close callbacks run).
 * Call on the loop thread with the loop not running. *p = NULL. */
void loop_destroy(loop_t **p);

/* The libuv loop, for other modules (http.c); borrowed. */
uv_loop_t *loop_uv(loop_t *l);
/* Borrowed registry given at loop_new, or NULL. */
metrics_t *loop_metrics(loop_t *l);

/* Run until loop_stop or until nothing keeps the loop alive. RLHF_OK. */
rlhf_err_t loop_run(loop_t *l);
/* Make loop_run return soon. Any thread; also before loop_run (it then
 * returns after one iteration). */
void loop_stop(loop_t *l);

/* Milliseconds of the loop clock (uv_now; cached per iteration). */
uint64_t loop_now_ms(loop_t *l);

/* ---- zmq sockets ---- */

/* Register sock (borrowed; the caller keeps owning and eventually closes it,
 * after loop_zsock_remove). queue names the socket in metrics
 * ("work", "rollouts"); NULL to not count. *out is owned by the loop and
 * valid until loop_zsock_remove or loop_destroy. RLHF_EINVAL (no ZMQ_FD),
 * RLHF_ENOMEM, RLHF_EIO. */
rlhf_err_t loop_zsock_add(loop_t *l, void *sock, const char *queue, loop_msg_fn on_msg, void *ud, loop_zsock_t **out);
/* Stop polling and forget the registration; safe inside its own callback.
 * The zmq socket may be closed right after. *p = NULL. */
void loop_zsock_remove(loop_zsock_t **p);
/* The zmq socket (borrowed) and the loop. */
void *loop_zsock_socket(loop_zsock_t *z);
loop_t *loop_zsock_loop(loop_zsock_t *z);

/* Send parts[0..nparts-1] as one message (ZMQ_SNDMORE between parts,
 * ZMQ_DONTWAIT always). Consumes the parts: on return each is closed
 * (re-initialised empty), success or not. Counts the message when it was sent,
 * then schedules a re-check of the socket (sending may swallow the ZMQ_FD
 * edge). RLHF_EIO with errno from zmq (EAGAIN: high-water mark reached;
 * EHOSTUNREACH: ROUTER_MANDATORY peer gone) - nothing was sent then. */
rlhf_err_t loop_zsock_send(loop_zsock_t *z, zmq_msg_t *parts, size_t nparts);
/* Same, copying nbufs borrowed buffers (bufs[i], lens[i]) into parts. */
rlhf_err_t loop_zsock_send_bufs(loop_zsock_t *z, const void *const *bufs, const size_t *lens, size_t nbufs);
/* Call after using the zmq socket directly (zmq_send, zmq_setsockopt, ...):
 * schedules a re-check so no message is left waiting. */
void loop_zsock_kick(loop_zsock_t *z);
/* Call fn once, on the loop thread, as soon as ZMQ_EVENTS has ZMQ_POLLOUT
 * (possibly during the next iteration). A later call replaces fn. */
void loop_zsock_want_writable(loop_zsock_t *z, loop_writable_fn fn, void *ud);

/* ---- timers ---- */

/* A stopped timer; caller owns *out (loop_timer_destroy, or loop_destroy).
 * RLHF_ENOMEM. */
rlhf_err_t loop_timer_new(loop_t *l, loop_timer_fn fn, void *ud, loop_timer_t **out);
/* Fire after timeout_ms, then every repeat_ms (0 = once). Restarts a running
 * timer. */
void loop_timer_start(loop_timer_t *t, uint64_t timeout_ms, uint64_t repeat_ms);
void loop_timer_stop(loop_timer_t *t);
/* Keep (true, default) or do not keep the loop alive while running. */
void loop_timer_ref(loop_timer_t *t, bool ref);
/* Stop and free (after the loop's next close phase); safe in its own
 * callback. *p = NULL. */
void loop_timer_destroy(loop_timer_t **p);

/* ---- work off the loop thread ---- */

/* Queue work(arg) for a worker thread; done(l, arg, cancelled) follows on the
 * loop thread. Loop thread only. While work is pending the loop stays alive.
 * arg is borrowed by the loop until done. RLHF_EINVAL (work or done NULL),
 * RLHF_ENOMEM. */
rlhf_err_t loop_submit(loop_t *l, loop_work_fn work, loop_done_fn done, void *arg);
/* Jobs submitted and not yet done. Loop thread only. */
int loop_pending_jobs(loop_t *l);
/* Run fn(l, arg) on the loop thread soon. Thread-safe; for worker threads
 * that report progress. Posts still queued at loop_destroy run there.
 * RLHF_ENOMEM. */
rlhf_err_t loop_post(loop_t *l, loop_post_fn fn, void *arg);

/* ---- signals ---- */

/* Handle SIGINT and SIGTERM as described above; ud goes to both callbacks.
 * The handlers do not keep the loop alive. RLHF_EIO. */
rlhf_err_t loop_catch_signals(loop_t *l, loop_signal_fn on_drain, loop_signal_fn on_force, void *ud);
/* A first signal arrived (a drain is under way). */
bool loop_draining(loop_t *l);

#endif
