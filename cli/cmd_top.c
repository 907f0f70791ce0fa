/*
 * cmd_top.c - `rlhf top [ADDRESS]`: the live pipeline of a running learner,
 * read from its /status every second.
 *
 * One frame: a header (step, version, rollouts/s, tokens/s, how busy the
 * learner's worker is, reward, KL, held-out score), the queues (messages/s,
 * MB/s, depth), the last update split by phase (a bar), reward / KL /
 * held-out sparklines over the last ~120 steps, then one row per actor
 * (samples/s, weights version, policy lag, last seen) and per reward worker.
 * Rates are differences of the learner's cumulative counters between two
 * polls, divided by the difference of its clock (server_time).
 *
 * Modes: the ncurses view (q quits; follows terminal resizes; SIGINT and
 * SIGTERM restore the terminal), `--once` (one plain-text frame, no curses),
 * `--once --json` (one JSON snapshot for scripts: two polls ~1 s apart).
 * An unreachable learner is one error line and exit status 1.
 *
 * What it deliberately is not: no history beyond what the learner keeps, no
 * per-actor drill-down, no control (it only reads).
 */
#include <curses.h>
#include <errno.h>
#include <jansson.h>
#include <langinfo.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define TOP_TIMEOUT_S 2.0 // per /status request
#define TOP_PHASES    16  // phases shown at most
#define TOP_SPARK     120 // sparkline points at most

static volatile sig_atomic_t g_top_signal = 0;
static void on_top_signal(int sig) {
    g_top_signal = sig;
}

/* ---- JSON helpers ---- */

static double jget(const json_t *o, const char *key) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static const char *js(const json_t *o, const char *key, const char *def) {
    json_t *v = o ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : def;
}

/* A number for --json: integers stay integers, NaN becomes null. */
static json_t *jreal(double x) {
    if (!isfinite(x)) return json_null();
    return x == floor(x) && fabs(x) < 9e15 ? json_integer((json_int_t)x) : json_real(x);
}

static int by_id(const void *a, const void *b) {
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "id"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "id"));
    return strcmp(x ? x : "", y ? y : "");
}

/* Sort an array of objects by "id" in place (stable display order). */
static void sort_by_id(json_t *arr) {
    size_t n = json_array_size(arr);
    json_t **v = n ? malloc(n * sizeof *v) : NULL;
    if (!v) return;
    for (size_t i = 0; i < n; i++) v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof *v, by_id);
    json_array_clear(arr);
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, v[i]);
    free(v);
}

/* (cur - prev) / dt for a cumulative counter; NAN without a previous value,
 * 0 when the counter went back (the learner restarted). */
static double rate(const json_t *cur, const json_t *prev, const char *key, double dt) {
    double a = jget(cur, key), b = jget(prev, key);
    if (!prev || !(dt > 0) || !isfinite(a) || !isfinite(b)) return NAN;
    return a >= b ? (a - b) / dt : 0.0;
}

static const json_t *find_by(const json_t *arr, const char *key, const json_t *like) {
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o) {
        if (json_equal(json_object_get(o, key), json_object_get(like, key))) return o;
    }
    return NULL;
}

/* ---- the snapshot: /status (cur, prev) -> what top shows ---- */

/* The view every mode renders and --json prints. Caller owns it. */
static json_t *build_view(const json_t *cur, const json_t *prev, const char *address) {
    double dt = prev ? jget(cur, "server_time") - jget(prev, "server_time") : NAN;
    json_t *tc = json_object_get(cur, "totals"), *tp = prev ? json_object_get(prev, "totals") : NULL;
    json_t *v = json_object();
    json_object_set_new(v, "address", json_string(address));
    json_object_set_new(v, "id", json_string(js(cur, "id", "?")));
    json_object_set_new(v, "server_time", jreal(jget(cur, "server_time")));
    json_object_set_new(v, "interval_s", jreal(dt));
    json_object_set_new(v, "wall_seconds", jreal(jget(cur, "wall_seconds")));
    static const char *const copy[] = {"step", "steps_total", "policy_version", "done", "training"};
    for (size_t i = 0; i < sizeof copy / sizeof copy[0]; i++) {
        json_t *x = json_object_get(cur, copy[i]);
        json_object_set_new(v, copy[i], x ? json_deep_copy(x) : json_null());
    }
    json_object_set_new(v, "rollouts_per_s", jreal(rate(tc, tp, "samples_scored", dt)));
    json_object_set_new(v, "tokens_per_s", jreal(rate(tc, tp, "tokens_scored", dt)));
    json_object_set_new(v, "busy_fraction", jreal(rate(tc, tp, "busy_seconds", dt)));
    static const char *const last[] = {"reward_mean", "kl", "entropy", "heldout_score", "policy_lag"};
    for (size_t i = 0; i < sizeof last / sizeof last[0]; i++)
        json_object_set_new(v, last[i], jreal(jget(cur, last[i])));

    json_t *qs = json_array();
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(cur, "queue_stats"), i, q) {
        const json_t *p = prev ? find_by(json_object_get(prev, "queue_stats"), "name", q) : NULL;
        double mi = rate(q, p, "messages_in", dt), mo = rate(q, p, "messages_out", dt);
        double bi = rate(q, p, "bytes_in", dt), bo = rate(q, p, "bytes_out", dt);
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(js(q, "name", "?")));
        json_object_set_new(o, "flow", json_string(js(q, "flow", "")));
        json_object_set_new(o, "messages", jreal(jget(q, "messages_in") + jget(q, "messages_out")));
        json_object_set_new(o, "bytes", jreal(jget(q, "bytes_in") + jget(q, "bytes_out")));
        json_object_set_new(o, "messages_in_per_s", jreal(mi));
        json_object_set_new(o, "messages_out_per_s", jreal(mo));
        json_object_set_new(o, "messages_per_s", jreal(mi + mo));
        json_object_set_new(o, "mb_per_s", jreal((bi + bo) / 1e6));
        json_object_set_new(o, "depth", jreal(jget(q, "depth")));
        json_object_set_new(o, "depth_of", json_string(js(q, "depth_of", "")));
        json_object_set_new(o, "in_flight", jreal(jget(q, "in_flight")));
        json_array_append_new(qs, o);
    }
    json_object_set_new(v, "queues", qs);

    json_t *actors = json_array(), *rewards = json_array(), *pe;
    json_array_foreach(json_object_get(cur, "peers"), i, pe) {
        const json_t *p = prev ? find_by(json_object_get(prev, "peers"), "uid", pe) : NULL;
        int actor = strcmp(js(pe, "role", ""), "actor") == 0;
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(js(pe, "id", "?")));
        json_object_set_new(o, "uid", jreal(jget(pe, "uid")));
        json_object_set_new(o, "samples", jreal(jget(pe, "samples")));
        json_object_set_new(o, "samples_per_s", jreal(rate(pe, p, "samples", dt)));
        if (actor) {
            json_object_set_new(o, "weights_version", jreal(jget(pe, "weights_version")));
            json_object_set_new(o, "policy_lag", jreal(jget(pe, "policy_lag")));
        }
        json_object_set_new(o, "tickets_held", jreal(jget(pe, "tickets_held")));
        json_object_set_new(o, "last_seen_s", jreal(jget(pe, "last_seen_s")));
        json_array_append_new(actor ? actors : rewards, o);
    }
    sort_by_id(actors);
    sort_by_id(rewards);
    json_object_set_new(v, "actors", actors);
    json_object_set_new(v, "reward_workers", rewards);
    json_t *ph = json_object_get(cur, "step_phases"), *h = json_object_get(cur, "history");
    json_object_set_new(v, "step_phases", ph ? json_deep_copy(ph) : json_null());
    json_object_set_new(v, "history", h ? json_deep_copy(h) : json_null());
    return v;
}

/* ---- output: one frame, to curses or to a FILE ---- */

enum { C_NONE, C_TITLE, C_HEAD, C_DIM, C_GOOD, C_WARN, C_BAD, C_PHASE }; // C_PHASE + i: phase i

typedef struct {
    int curses; // draw on stdscr; else print to f
    FILE *f;
    int width, height; // height: rows available (curses), INT_MAX-ish for text
    int row, col;
    int utf8, color;
} out_t;

/* Columns of a UTF-8 string (every code point we print is one column). */
static int ucols(const char *s, size_t n) {
    int c = 0;
    for (size_t i = 0; i < n && s[i]; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Append text in style; what passes the right edge is cut. */
static void put(out_t *o, int style, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(out_t *o, int style, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (o->row >= o->height) return;
    size_t n = 0;
    int cols = 0;
    while (buf[n] && o->col + cols < o->width) { // cut at a code point boundary
        n++;
        while (((unsigned char)buf[n] & 0xC0) == 0x80) n++;
        cols++;
    }
    if (!n) return;
    if (!o->curses) {
        fwrite(buf, 1, n, o->f);
    } else {
        int a = 0;
        if (o->color && style >= C_PHASE)
            a = COLOR_PAIR(10 + (style - C_PHASE) % 7);
        else if (o->color && style != C_NONE)
            a = COLOR_PAIR(style) | (style == C_TITLE || style == C_HEAD ? A_BOLD : 0);
        else if (style == C_TITLE || style == C_HEAD)
            a = A_BOLD;
        else if (style >= C_PHASE)
            a = A_REVERSE;
        attron(a);
        mvaddnstr(o->row, o->col, buf, (int)n);
        attroff(a);
    }
    o->col += ucols(buf, n);
}

static void endl(out_t *o) {
    if (o->row >= o->height) return;
    if (!o->curses) fputc('\n', o->f);
    o->row++;
    o->col = 0;
}

/* ---- number formats ---- */

static const char *fnum(char *buf, size_t len, double x, const char *fmt) {
    if (!isfinite(x))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, fmt, x);
    return buf;
}

static const char *fdur(char *buf, size_t len, double s) {
    if (!isfinite(s)) return fnum(buf, len, s, "");
    long t = (long)s;
    if (s < 1.0)
        snprintf(buf, len, "%.0fms", s * 1000.0);
    else if (t >= 3600)
        snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60)
        snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else
        snprintf(buf, len, "%.1fs", s);
    return buf;
}

/* ---- pieces of the frame ---- */

static void spark(out_t *o, const char *label, const json_t *vals, int carry, const char *fmt) {
    static const char *const blocks[8] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
    static const char ascii[8] = {'_', '.', ',', '-', '=', '+', '*', '#'};
    double x[TOP_SPARK];
    int n = 0;
    size_t total = json_array_size(vals);
    int room = o->width - 12 - 40;
    if (room > TOP_SPARK) room = TOP_SPARK;
    if (room < 8) room = 8;
    size_t from = total > (size_t)room ? total - (size_t)room : 0;
    double held = NAN;
    for (size_t i = 0; i < total; i++) { // carry forward through the whole history
        json_t *e = json_array_get(vals, i);
        double y = json_is_number(e) ? json_number_value(e) : NAN;
        if (carry) y = isfinite(y) ? (held = y) : held;
        if (i >= from) x[n++] = y;
    }
    double lo = INFINITY, hi = -INFINITY, lastv = NAN;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) lo = fmin(lo, x[i]), hi = fmax(hi, x[i]), lastv = x[i];
    put(o, C_HEAD, "%-10s", label);
    if (!isfinite(lastv)) {
        put(o, C_DIM, "(no steps yet)");
        endl(o);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i])) {
            put(o, C_NONE, " ");
            continue;
        }
        int lv = hi > lo ? (int)lrint((x[i] - lo) / (hi - lo) * 7.0) : 3;
        lv = lv < 0 ? 0 : lv > 7 ? 7 : lv;
        if (o->utf8)
            put(o, C_GOOD, "%s", blocks[lv]);
        else
            put(o, C_GOOD, "%c", ascii[lv]);
    }
    char a[32], b[32], c[32];
    put(o, C_NONE, "  last %s", fnum(a, sizeof a, lastv, fmt));
    put(o, C_DIM, "  min %s max %s", fnum(b, sizeof b, lo, fmt), fnum(c, sizeof c, hi, fmt));
    endl(o);
}

static void phases(out_t *o, const json_t *ph) {
    static const char sym[] = "wrpcekuxyz0123456789";
    const json_t *order = json_object_get(ph, "order"), *sec = json_object_get(ph, "seconds");
    double total = jget(ph, "total");
    char a[32];
    put(o, C_TITLE, "LAST UPDATE");
    if (!json_is_array(order) || !(total > 0)) {
        put(o, C_DIM, "  (no update yet)");
        endl(o);
        return;
    }
    put(o, C_NONE, "  step %.0f, %s in all", jget(ph, "step"), fdur(a, sizeof a, total));
    endl(o);
    size_t np = json_array_size(order);
    if (np > TOP_PHASES) np = TOP_PHASES;
    int barw = o->width - 4;
    if (barw > 80) barw = 80;
    if (barw < 10) barw = 10;
    /* cells per phase by largest remainder, so the bar is always barw wide */
    int cells[TOP_PHASES] = {0}, used = 0;
    double frac[TOP_PHASES];
    for (size_t i = 0; i < np; i++) {
        double s = jget(sec, json_string_value(json_array_get(order, i)));
        double w = isfinite(s) && s > 0 ? s / total * barw : 0;
        cells[i] = (int)w;
        frac[i] = w - cells[i];
        used += cells[i];
    }
    while (used < barw) {
        size_t best = 0;
        for (size_t i = 1; i < np; i++)
            if (frac[i] > frac[best]) best = i;
        if (frac[best] <= 0) break;
        cells[best]++, frac[best] = 0, used++;
    }
    put(o, C_NONE, " [");
    for (size_t i = 0; i < np; i++)
        for (int k = 0; k < cells[i]; k++) put(o, C_PHASE + (int)i, "%c", o->curses && o->color ? ' ' : sym[i]);
    put(o, C_NONE, "]");
    endl(o);
    put(o, C_NONE, " ");
    for (size_t i = 0; i < np; i++) {
        const char *name = json_string_value(json_array_get(order, i));
        if (!name) continue;
        char item[64];
        int len = snprintf(item, sizeof item, "%s %s", name, fdur(a, sizeof a, jget(sec, name)));
        if (o->col + len + 4 > o->width) endl(o), put(o, C_NONE, " ");
        put(o, C_PHASE + (int)i, "%c", o->curses && o->color ? ' ' : sym[i]);
        put(o, C_NONE, " %s  ", item);
    }
    endl(o);
}

static void frame(out_t *o, const json_t *v, const char *note) {
    char a[32], b[32], c[32], d[32], e[32];
    json_t *done = json_object_get(v, "done"), *training = json_object_get(v, "training");
    put(o, C_TITLE, "rlhf top");
    put(o, C_NONE, "  %s  learner %s  ", js(v, "address", "?"), js(v, "id", "?"));
    put(o, C_HEAD, "step %.0f/%.0f", jget(v, "step"), jget(v, "steps_total"));
    put(o, C_NONE, "  version %.0f  ", jget(v, "policy_version"));
    if (json_is_true(done))
        put(o, C_GOOD, "done");
    else
        put(o, json_is_true(training) ? C_GOOD : C_WARN, "%s",
            json_is_true(training) ? "training" : "waiting for a batch");
    put(o, C_DIM, "  up %s", fdur(a, sizeof a, jget(v, "wall_seconds")));
    endl(o);
    double busy = jget(v, "busy_fraction");
    put(o, C_NONE, "rollouts/s %s  tokens/s %s  busy %s  ", fnum(a, sizeof a, jget(v, "rollouts_per_s"), "%.1f"),
        fnum(b, sizeof b, jget(v, "tokens_per_s"), "%.0f"),
        fnum(c, sizeof c, isfinite(busy) ? fmin(busy, 1.0) * 100 : NAN, "%.0f%%"));
    put(o, C_NONE, "reward %s  KL %s  held-out %s  lag %s", fnum(a, sizeof a, jget(v, "reward_mean"), "%.3f"),
        fnum(b, sizeof b, jget(v, "kl"), "%.4f"), fnum(c, sizeof c, jget(v, "heldout_score"), "%.3f"),
        fnum(d, sizeof d, jget(v, "policy_lag"), "%.2f"));
    endl(o);
    if (note) put(o, C_BAD, "%s", note);
    endl(o);

    put(o, C_TITLE, "%-10s%-21s%9s%9s%12s  %s", "QUEUE", "FLOW", "MSG/S", "MB/S", "MESSAGES", "DEPTH");
    endl(o);
    size_t i;
    json_t *q;
    json_array_foreach(json_object_get(v, "queues"), i, q) {
        put(o, C_HEAD, "%-10s", js(q, "name", "?"));
        put(o, C_NONE, "%-21s%9s%9s%12s  ", js(q, "flow", ""), fnum(a, sizeof a, jget(q, "messages_per_s"), "%.1f"),
            fnum(b, sizeof b, jget(q, "mb_per_s"), "%.3f"), fnum(c, sizeof c, jget(q, "messages"), "%.0f"));
        double depth = jget(q, "depth"), fl = jget(q, "in_flight");
        if (isfinite(depth)) {
            put(o, depth > 0 ? C_WARN : C_NONE, "%.0f", depth);
            put(o, C_DIM, " %s", js(q, "depth_of", ""));
            if (isfinite(fl)) put(o, C_DIM, " (%.0f out)", fl);
        }
        endl(o);
    }
    endl(o);
    phases(o, json_object_get(v, "step_phases"));
    endl(o);
    json_t *h = json_object_get(v, "history");
    spark(o, "reward", json_object_get(h, "reward_mean"), 0, "%.3f");
    spark(o, "KL", json_object_get(h, "kl"), 0, "%.4f");
    spark(o, "held-out", json_object_get(h, "heldout_score"), 1, "%.3f");
    endl(o);

    for (int r = 0; r < 2; r++) {
        json_t *arr = json_object_get(v, r ? "reward_workers" : "actors");
        size_t n = json_array_size(arr);
        char title[48];
        snprintf(title, sizeof title, "%s (%zu)", r ? "REWARD WORKERS" : "ACTORS", n);
        if (r)
            put(o, C_TITLE, "%-20s%11s%10s%18s%7s%11s", title, "SAMPLES/S", "SAMPLES", "", "HELD", "LAST SEEN");
        else
            put(o, C_TITLE, "%-20s%11s%10s%9s%9s%7s%11s", title, "SAMPLES/S", "SAMPLES", "VERSION", "LAG", "HELD",
                "LAST SEEN");
        endl(o);
        json_t *p;
        json_array_foreach(arr, i, p) {
            if (o->curses && o->row >= o->height - 1 - (r ? 0 : 2) && i + 1 < n) {
                put(o, C_DIM, "  ... %zu more", n - i);
                endl(o);
                break;
            }
            double seen = jget(p, "last_seen_s"), lag = jget(p, "policy_lag");
            put(o, C_HEAD, "%-20s", js(p, "id", "?"));
            put(o, C_NONE, "%11s%10s", fnum(a, sizeof a, jget(p, "samples_per_s"), "%.1f"),
                fnum(b, sizeof b, jget(p, "samples"), "%.0f"));
            if (r) {
                put(o, C_NONE, "%18s", "");
            } else {
                put(o, C_NONE, "%9s", fnum(c, sizeof c, jget(p, "weights_version"), "%.0f"));
                put(o, isfinite(lag) && lag > 1 ? C_WARN : C_NONE, "%9s", fnum(d, sizeof d, lag, "%.0f"));
            }
            put(o, C_NONE, "%7s", fnum(c, sizeof c, jget(p, "tickets_held"), "%.0f"));
            put(o, seen > 5 ? C_BAD : seen > 2 ? C_WARN : C_NONE, "%11s", fdur(e, sizeof e, seen));
            endl(o);
        }
        if (n == 0) put(o, C_DIM, "  (none connected)"), endl(o);
        if (!r) endl(o);
    }
}

/* ---- polling ---- */

typedef struct {
    char host[256];
    int port;
    char address[300];
    json_t *prev, *cur; // last two /status replies
    char err[1024];     // why the last poll failed ("" if it did not)
} top_t;

/* Poll /status; 0 (cur advanced) or -1 (err set, cur kept). */
static int poll_status(top_t *t) {
    char err[256] = "";
    json_t *s = cli_get_json(t->host, t->port, "/status", TOP_TIMEOUT_S, err, sizeof err);
    if (!s) {
        snprintf(t->err, sizeof t->err, "cannot reach the learner at %s: %s", t->address, err);
        return -1;
    }
    const char *role = js(s, "role", "?");
    if (strcmp(role, "learner") != 0 || !json_is_array(json_object_get(s, "queue_stats"))) {
        snprintf(t->err, sizeof t->err, "%s serves the /status of %s %s, not a learner's with queue_stats", t->address,
                 strcmp(role, "actor") == 0 ? "an" : "a", role);
        json_decref(s);
        return -1;
    }
    json_decref(t->prev);
    t->prev = t->cur;
    t->cur = s;
    t->err[0] = 0;
    return 0;
}

static int term_width(int fd) {
    struct winsize ws;
    if (isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
    return 100;
}

static int locale_utf8(void) {
    const char *cs = nl_langinfo(CODESET);
    return cs && (strcmp(cs, "UTF-8") == 0 || strcmp(cs, "utf8") == 0);
}

static int run_curses(top_t *t, double interval) {
    struct sigaction sa = {.sa_handler = on_top_signal}; // before initscr: ncurses then leaves them to us
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!initscr()) {
        fprintf(stderr, "rlhf top: cannot start the terminal UI (TERM=%s); try --once\n", getenv("TERM"));
        return 1;
    }
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout(100);
    int color = has_colors();
    if (color) {
        start_color();
        use_default_colors();
        init_pair(C_TITLE, COLOR_CYAN, -1);
        init_pair(C_HEAD, -1, -1);
        init_pair(C_DIM, COLOR_BLUE, -1);
        init_pair(C_GOOD, COLOR_GREEN, -1);
        init_pair(C_WARN, COLOR_YELLOW, -1);
        init_pair(C_BAD, COLOR_RED, -1);
        static const short bg[7] = {COLOR_WHITE,  COLOR_CYAN,    COLOR_BLUE, COLOR_GREEN,
                                    COLOR_YELLOW, COLOR_MAGENTA, COLOR_RED};
        for (int i = 0; i < 7; i++) init_pair((short)(10 + i), COLOR_BLACK, bg[i]);
    }
    int utf8 = locale_utf8();
    double next = cli_now() + interval;
    int dirty = 1;
    while (!g_top_signal) {
        if (cli_now() >= next) {
            poll_status(t);
            next = cli_now() + interval;
            dirty = 1;
        }
        if (dirty) {
            json_t *v = build_view(t->cur, t->prev, t->address);
            out_t o = {.curses = 1, .width = COLS, .height = LINES - 1, .utf8 = utf8, .color = color};
            erase();
            frame(&o, v, t->err[0] ? t->err : NULL);
            json_decref(v);
            attron(color ? COLOR_PAIR(C_DIM) : A_DIM);
            mvaddnstr(LINES - 1, 0, "q quit", COLS);
            attroff(color ? COLOR_PAIR(C_DIM) : A_DIM);
            refresh();
            dirty = 0;
        }
        int ch = getch();
        if (ch == 'q' || ch == 'Q') break;
        if (ch == KEY_RESIZE || ch == 12 /* ^L */) dirty = 1;
    }
    endwin();
    int sig = g_top_signal;
    return sig ? 128 + sig : 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: rlhf top [ADDRESS] [--once] [--json] [--interval S]\n"
               "Live view of a running learner: queue rates and depths, actors and reward workers, the last\n"
               "update split by phase, reward / KL / held-out sparklines. ADDRESS is the learner's HTTP\n"
               "address: host:port or http://host:port (default 127.0.0.1:8080).\n"
               "  --once         print one plain-text frame and exit (no curses)\n"
               "  --once --json  print one JSON snapshot (rates from two polls ~1 s apart) and exit\n"
               "  --interval S   seconds between polls (default 1)\n"
               "Keys: q quits.\n");
}

int cmd_top(int argc, char **argv) {
    const char *addr = "127.0.0.1:8080";
    int once = 0, as_json = 0, n_addr = 0;
    double interval = 1.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--once") == 0) {
            once = 1;
        } else if (strcmp(argv[i], "--json") == 0) {
            as_json = 1;
        } else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
            char *end = NULL;
            interval = strtod(argv[++i], &end);
            if (*end || !(interval >= 0.1 && interval <= 3600)) {
                fprintf(stderr, "rlhf top: --interval takes seconds between 0.1 and 3600, not '%s'\n", argv[i]);
                return 2;
            }
        } else if (argv[i][0] == '-' || n_addr++) {
            fprintf(stderr, "rlhf top: unexpected argument '%s' (see rlhf top --help)\n", argv[i]);
            return 2;
        } else {
            addr = argv[i];
        }
    }
    if (as_json) once = 1;
    setlocale(LC_ALL, "");
    static top_t top;
    top_t *t = &top;
    memset(t, 0, sizeof *t);
    if (cli_parse_address(addr, t->host, sizeof t->host, &t->port) != 0) {
        fprintf(stderr, "rlhf top: '%s' is not an address; give host:port or http://host:port\n", addr);
        return 2;
    }
    snprintf(t->address, sizeof t->address, strchr(t->host, ':') ? "[%s]:%d" : "%s:%d", t->host, t->port);
    int rc = 0;
    if (poll_status(t) != 0) {
        fprintf(stderr, "rlhf top: %s\n", t->err);
        return 1;
    }
    if (once) {
        /* two polls, for rates */
        struct timespec d = {(time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9)};
        while (nanosleep(&d, &d) != 0 && errno == EINTR) {
        }
        if (poll_status(t) != 0) {
            fprintf(stderr, "rlhf top: %s\n", t->err);
            rc = 1;
        } else {
            json_t *v = build_view(t->cur, t->prev, t->address);
            if (as_json) {
                char *text = json_dumps(v, JSON_INDENT(2));
                if (text) printf("%s\n", text);
                free(text);
            } else {
                out_t o = {.f = stdout, .width = term_width(STDOUT_FILENO), .height = 1 << 30, .utf8 = locale_utf8()};
                frame(&o, v, NULL);
            }
            json_decref(v);
        }
    } else if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO)) {
        fprintf(stderr, "rlhf top: not a terminal; use --once (plain text) or --once --json\n");
        rc = 2;
    } else {
        rc = run_curses(t, interval);
    }
    json_decref(t->prev);
    json_decref(t->cur);
    return rc;
}
