/*
 * test_tickets.c - the learner's ticket table.
 *
 * Unit tests drive each transition by hand with an explicit clock: issue,
 * deadline expiry and reissue (new id, same prompt set), abandon, accepted /
 * duplicate / stale / unknown completions, the max_lag window, epoch
 * barriers and overlap, the two-stage path (generated -> scoring -> done,
 * re-scoring after a reward worker dies), counters, and save/load (exact
 * round trip, config mismatch, tampered state rejected by the invariant
 * check, restart with fresh ids).
 *
 * A seeded simulation then runs thousands of steps of actors and reward
 * workers that take tickets, die, straggle past their deadline, send results
 * twice, return rollouts of an old or an unpublished policy version, and a
 * learner that publishes new versions as results come in. The test keeps its
 * own ledger (which prompts each ticket carried, which job won) and checks
 * every verdict against it as it happens; at the end every prompt of every
 * epoch must have been used exactly once by that ledger, nothing lost, and
 * the table's counters must equal the test's own counts and balance. The
 * same run with save/load in the middle must make the same decisions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "learner/tickets.h"

/* ---- helpers ---- */

static tickets_config_t cfg_small(uint32_t n, uint32_t ppt) {
    tickets_config_t c;
    tickets_config_default(&c);
    c.n_prompts = n;
    c.prompts_per_ticket = ppt;
    c.k = 2;
    c.seed = 42;
    c.max_lag = 0;
    c.gen_timeout_ms = 100;
    c.score_timeout_ms = 50;
    c.max_open_epochs = 1;
    c.two_stage = false;
    return c;
}

static tickets_t *mk(const tickets_config_t *c) {
    tickets_t *t = NULL;
    char err[256] = "";
    rlhf_err_t rc = tickets_new(&t, c, err, sizeof err);
    if (rc != RLHF_OK) fail_msg("tickets_new: %s", err);
    return t;
}

#define check_ok(t)                                                                                                    \
    do {                                                                                                               \
        char err_[512] = "";                                                                                           \
        if (tickets_check_invariants((t), err_, sizeof err_) != RLHF_OK)                                               \
            fail_msg("%s:%d: invariants: %s", __FILE__, __LINE__, err_);                                               \
    } while (0)

static tickets_ticket_t issue(tickets_t *t, int64_t now) {
    tickets_ticket_t k;
    rlhf_err_t rc = tickets_issue(t, now, &k);
    if (rc != RLHF_OK) fail_msg("tickets_issue: %s", rlhf_strerror(rc));
    return k;
}

static tickets_verdict_t complete(tickets_t *t, uint64_t id, uint64_t version) {
    tickets_verdict_t v = TICKETS_UNKNOWN;
    assert_int_equal(tickets_complete(t, id, version, &v), RLHF_OK);
    return v;
}

static tickets_verdict_t scored(tickets_t *t, uint64_t id) {
    tickets_verdict_t v = TICKETS_UNKNOWN;
    assert_int_equal(tickets_scored(t, id, &v), RLHF_OK);
    return v;
}

#define assert_verdict(got, want)                                                                                      \
    do {                                                                                                               \
        tickets_verdict_t g_ = (got), w_ = (want);                                                                     \
        if (g_ != w_)                                                                                                  \
            fail_msg("%s:%d: verdict %s, want %s", __FILE__, __LINE__, tickets_verdict_name(g_),                       \
                     tickets_verdict_name(w_));                                                                        \
    } while (0)

static tickets_counters_t counters(const tickets_t *t) {
    tickets_counters_t c;
    tickets_counters(t, &c);
    return c;
}

/* Canonical text of the saved state. Caller frees. */
static char *save_text(const tickets_t *t, int64_t now) {
    json_t *j = NULL;
    assert_int_equal(tickets_save(t, now, &j), RLHF_OK);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(s);
    json_decref(j);
    return s;
}

static rlhf_err_t load_text(tickets_t **out, const tickets_config_t *c, const char *text, int64_t now, unsigned flags,
                            char *err, size_t errlen) {
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    if (!j) fail_msg("json_loads: %s", je.text);
    rlhf_err_t rc = tickets_load(out, c, j, now, flags, err, errlen);
    json_decref(j);
    return rc;
}

/* ---- configuration ---- */

static void test_config(void **state) {
    (void)state;
    tickets_config_t c;
    char err[256];
    tickets_config_default(&c);
    assert_int_equal(tickets_config_validate(&c, err, sizeof err), RLHF_EINVAL); // n_prompts unset
    assert_non_null(strstr(err, "n_prompts"));
    c.n_prompts = 10;
    assert_int_equal(tickets_config_validate(&c, err, sizeof err), RLHF_OK);

    tickets_config_t b = c;
    b.prompts_per_ticket = 0;
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_EINVAL);
    assert_non_null(strstr(err, "prompts_per_ticket"));
    b = c;
    b.prompts_per_ticket = 1024;
    b.k = 8; // 8192 samples per ticket
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_ERANGE);
    assert_non_null(strstr(err, "prompts_per_ticket * k"));
    b = c;
    b.k = 0;
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_EINVAL);
    b = c;
    b.gen_timeout_ms = 86400001;
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_ERANGE);
    assert_non_null(strstr(err, "gen_timeout_ms"));
    b = c;
    b.score_timeout_ms = 0;
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_EINVAL);
    b.two_stage = false; // not used in one stage
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_OK);
    b = c;
    b.max_open_epochs = 0;
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_EINVAL);
    b.max_open_epochs = TICKETS_MAX_OPEN_EPOCHS + 1;
    assert_int_equal(tickets_config_validate(&b, err, sizeof err), RLHF_ERANGE);
    assert_non_null(strstr(err, "max_open_epochs"));

    static char dummy;
    tickets_t *t = (tickets_t *)(void *)&dummy; // must be set to NULL on error
    assert_int_equal(tickets_new(&t, &b, err, sizeof err), RLHF_ERANGE);
    assert_null(t);
    tickets_destroy(&t); // NULL is fine
    tickets_destroy(NULL);
}

/* ---- issuing and the prompt stream ---- */

static void test_issue_and_order(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(10, 3);
    c.max_epochs = 2;
    tickets_t *t = mk(&c);
    assert_int_equal(tickets_set_policy_version(t, 1), RLHF_OK);

    uint32_t seen[10] = {0}, order0[10];
    uint32_t sizes[] = {3, 3, 3, 1}; // the epoch's tail is a short ticket
    uint64_t seeds[4];
    for (int i = 0; i < 4; i++) {
        tickets_ticket_t k = issue(t, 1000);
        assert_int_equal(k.id, (uint64_t)i + 1); // monotonic from 1
        assert_int_equal(k.job, k.id);
        assert_int_equal(k.attempt, 1);
        assert_int_equal(k.epoch, 0);
        assert_int_equal(k.first, (uint32_t)i * 3);
        assert_int_equal(k.n_prompts, sizes[i]);
        assert_int_equal(k.k, 2);
        assert_int_equal(k.policy_version, 1);
        assert_int_equal(k.deadline_ms, 100);
        assert_int_equal(k.deadline_at_ms, 1100);
        assert_int_equal(k.state, TICKETS_GENERATING);
        assert_false(k.expired);
        seeds[i] = k.seed;
        for (int s = 0; s < i; s++) assert_true(seeds[s] != k.seed);
        for (uint32_t p = 0; p < k.n_prompts; p++) {
            assert_true(k.prompts[p] < 10);
            seen[k.prompts[p]]++;
            order0[k.first + p] = k.prompts[p];
        }
    }
    for (int p = 0; p < 10; p++) assert_int_equal(seen[p], 1); // a permutation
    tickets_ticket_t k;
    assert_int_equal(tickets_issue(t, 1000, &k), RLHF_ENOTFOUND); // strict barrier: epoch 0 not done
    check_ok(t);

    /* The same seed gives the same order; another seed another one. */
    tickets_t *same = mk(&c);
    c.seed = 43;
    tickets_t *other = mk(&c);
    c.seed = 42;
    uint32_t o_same[10], o_other[10];
    for (int i = 0; i < 4; i++) {
        tickets_ticket_t a = issue(same, 0), b = issue(other, 0);
        memcpy(o_same + a.first, a.prompts, a.n_prompts * sizeof(uint32_t));
        memcpy(o_other + b.first, b.prompts, b.n_prompts * sizeof(uint32_t));
        assert_int_equal(a.seed, seeds[i]);
    }
    assert_memory_equal(o_same, order0, sizeof order0);
    assert_memory_not_equal(o_other, order0, sizeof order0);
    tickets_destroy(&same);
    tickets_destroy(&other);
    assert_null(same);

    /* Finish epoch 0: epoch 1 opens with a different order. */
    for (uint64_t id = 1; id <= 4; id++) assert_verdict(complete(t, id, 1), TICKETS_ACCEPTED);
    assert_int_equal(tickets_epochs_finished(t), 1);
    tickets_epoch_t h;
    assert_int_equal(tickets_epoch_stats(t, 0, &h), RLHF_OK);
    assert_int_equal(h.epoch, 0);
    assert_int_equal(h.used_once, 10);
    assert_int_equal(h.unused + h.reused, 0);
    assert_int_equal(tickets_epoch_stats(t, 1, &h), RLHF_ERANGE);
    uint32_t order1[10];
    for (int i = 0; i < 4; i++) {
        k = issue(t, 2000);
        assert_int_equal(k.epoch, 1);
        assert_true(k.seed != seeds[i]);
        memcpy(order1 + k.first, k.prompts, k.n_prompts * sizeof(uint32_t));
    }
    assert_memory_not_equal(order1, order0, sizeof order0);
    for (uint64_t id = 5; id <= 8; id++) assert_verdict(complete(t, id, 1), TICKETS_ACCEPTED);
    assert_true(tickets_finished(t)); // max_epochs = 2
    assert_int_equal(tickets_issue(t, 3000, &k), RLHF_ENOTFOUND);
    tickets_counters_t n = counters(t);
    assert_int_equal(n.tickets_issued, 8);
    assert_int_equal(n.tickets_completed, 8);
    assert_int_equal(n.prompts_completed, 20);
    assert_int_equal(n.epochs_finished, 2);
    assert_int_equal(n.tickets_open + n.jobs_open + n.prompts_pending + n.prompts_lost, 0);
    check_ok(t);
    tickets_destroy(&t);
}

/* ---- verdicts ---- */

static void test_verdicts(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(8, 2);
    tickets_t *t = mk(&c);
    tickets_ticket_t a = issue(t, 0), b = issue(t, 0);
    tickets_ticket_t k;
    assert_int_equal(tickets_lookup(t, a.id, &k), RLHF_OK);
    assert_int_equal(k.id, a.id);
    assert_int_equal(k.n_prompts, 2);
    assert_memory_equal(k.prompts, a.prompts, 2 * sizeof(uint32_t));

    assert_verdict(complete(t, a.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, a.id, 0), TICKETS_DUPLICATE); // the same results twice
    assert_verdict(complete(t, 0, 0), TICKETS_UNKNOWN);
    assert_verdict(complete(t, 99, 0), TICKETS_UNKNOWN); // never issued
    assert_int_equal(tickets_lookup(t, a.id, &k), RLHF_ENOTFOUND);
    assert_int_equal(tickets_lookup(t, 99, &k), RLHF_ENOTFOUND);
    assert_int_equal(tickets_score_issue(t, 0, &k), RLHF_EUNSUPPORTED); // single stage
    tickets_verdict_t v;
    assert_int_equal(tickets_scored(t, b.id, &v), RLHF_EUNSUPPORTED);
    assert_int_equal(tickets_complete(NULL, 1, 0, &v), RLHF_EINVAL);

    tickets_counters_t n = counters(t);
    assert_int_equal(n.tickets_issued, 2);
    assert_int_equal(n.tickets_completed, 1);
    assert_int_equal(n.duplicates_dropped, 1);
    assert_int_equal(n.unknown_dropped, 2);
    assert_int_equal(n.tickets_open, 1);
    assert_int_equal(n.prompts_pending, 2);
    assert_int_equal(n.epoch_prompts_done, 2);
    check_ok(t);
    assert_verdict(complete(t, b.id, 0), TICKETS_ACCEPTED);
    check_ok(t);
    tickets_destroy(&t);
}

/* ---- deadlines and reissue ---- */

static void test_expire_reissue(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(8, 2);
    c.max_open_epochs = 2;
    tickets_t *t = mk(&c);
    tickets_expired_t ex[4];
    size_t n_ex = 99;

    /* The reissue wins; the original's late result is a duplicate. */
    tickets_ticket_t a = issue(t, 0);
    assert_int_equal(tickets_expire(t, 99, ex, 4, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 0);
    assert_int_equal(tickets_expire(t, 100, ex, 4, &n_ex), RLHF_OK); // deadline reached
    assert_int_equal(n_ex, 1);
    assert_int_equal(ex[0].id, a.id);
    assert_int_equal(ex[0].job, a.id);
    assert_int_equal(ex[0].attempt, 1);
    assert_int_equal(ex[0].stage, TICKETS_STAGE_GENERATE);
    assert_int_equal(tickets_expire(t, 500, ex, 4, &n_ex), RLHF_OK); // only once
    assert_int_equal(n_ex, 0);
    tickets_ticket_t k;
    assert_int_equal(tickets_lookup(t, a.id, &k), RLHF_OK); // still remembered: it may still win
    assert_true(k.expired);
    assert_int_equal(k.state, TICKETS_QUEUED);

    tickets_ticket_t b = issue(t, 150); // the queued job goes before fresh prompts
    assert_true(b.id > a.id);
    assert_int_equal(b.job, a.id);
    assert_int_equal(b.attempt, 2);
    assert_int_equal(b.first, a.first);
    assert_int_equal(b.n_prompts, a.n_prompts);
    assert_memory_equal(b.prompts, a.prompts, a.n_prompts * sizeof(uint32_t));
    assert_int_equal(b.seed, a.seed);
    assert_int_equal(b.deadline_at_ms, 250);
    assert_verdict(complete(t, b.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, a.id, 0), TICKETS_DUPLICATE);
    tickets_counters_t n = counters(t);
    assert_int_equal(n.tickets_issued, 2);
    assert_int_equal(n.tickets_reissued, 1);
    assert_int_equal(n.tickets_expired, 1);
    assert_int_equal(n.tickets_completed, 1);
    assert_int_equal(n.tickets_superseded, 1);
    assert_int_equal(n.duplicates_dropped, 1);
    assert_int_equal(n.tickets_open, 0);
    check_ok(t);

    /* The original comes back first after all: it wins, the reissue is moot. */
    tickets_ticket_t c1 = issue(t, 1000);
    assert_int_equal(tickets_expire(t, 1100, NULL, 0, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 1);
    tickets_ticket_t c2 = issue(t, 1100);
    assert_int_equal(c2.job, c1.id);
    assert_verdict(complete(t, c1.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, c2.id, 0), TICKETS_DUPLICATE);
    assert_int_equal(tickets_lookup(t, c2.id, &k), RLHF_ENOTFOUND);
    check_ok(t);

    /* An expired attempt may win while its job waits in the queue: no reissue then. */
    tickets_ticket_t d = issue(t, 2000);
    assert_int_equal(tickets_expire(t, 2100, ex, 4, &n_ex), RLHF_OK);
    assert_verdict(complete(t, d.id, 0), TICKETS_ACCEPTED);
    tickets_ticket_t e = issue(t, 2100);
    assert_int_equal(e.attempt, 1); // fresh prompts, not a reissue
    assert_int_equal(e.job, e.id);
    check_ok(t);

    /* More expired than out[] holds: all are processed, all are counted. */
    tickets_ticket_t f = issue(t, 3000), g = issue(t, 3000);
    (void)f;
    (void)g;
    assert_int_equal(tickets_expire(t, 5000, ex, 1, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 3); // e, f, g
    assert_int_equal(ex[0].id, e.id);
    n = counters(t);
    assert_int_equal(n.tickets_expired, 3 + 3); // a, c1, d before
    assert_int_equal(n.jobs_open, 3);
    check_ok(t);
    tickets_destroy(&t);
}

static void test_abandon(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(8, 2);
    tickets_t *t = mk(&c);
    tickets_ticket_t a = issue(t, 0);
    assert_int_equal(tickets_abandon(t, a.id), RLHF_OK);
    assert_int_equal(tickets_abandon(t, a.id), RLHF_ENOTFOUND); // already expired
    assert_int_equal(tickets_abandon(t, 12345), RLHF_ENOTFOUND);
    size_t n_ex;
    assert_int_equal(tickets_expire(t, 1000, NULL, 0, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 0); // nothing live left to expire
    tickets_ticket_t b = issue(t, 10);
    assert_int_equal(b.job, a.id);
    assert_int_equal(b.attempt, 2);
    assert_verdict(complete(t, b.id, 0), TICKETS_ACCEPTED);
    assert_int_equal(tickets_abandon(t, b.id), RLHF_ENOTFOUND); // resolved
    check_ok(t);
    tickets_destroy(&t);
}

/* ---- staleness ---- */

static void test_stale(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(16, 2);
    c.max_open_epochs = 2;
    tickets_t *t = mk(&c);
    tickets_ticket_t k = issue(t, 0);
    assert_int_equal(k.policy_version, 0); // nothing published yet
    assert_verdict(complete(t, k.id, 0), TICKETS_ACCEPTED);

    /* max_lag 0: strictly on-policy. */
    assert_int_equal(tickets_set_policy_version(t, 1), RLHF_OK);
    tickets_ticket_t a = issue(t, 0);
    assert_int_equal(a.policy_version, 1);
    assert_int_equal(tickets_set_policy_version(t, 2), RLHF_OK);
    assert_int_equal(tickets_set_policy_version(t, 1), RLHF_EINVAL); // versions only go up
    assert_verdict(complete(t, a.id, 1), TICKETS_STALE);
    assert_int_equal(tickets_lookup(t, a.id, &k), RLHF_ENOTFOUND);
    assert_verdict(complete(t, a.id, 2), TICKETS_DUPLICATE); // resolved as stale
    tickets_ticket_t b = issue(t, 0);                        // the prompts come back
    assert_int_equal(b.job, a.id);
    assert_int_equal(b.attempt, 2);
    assert_int_equal(b.policy_version, 2);
    assert_memory_equal(b.prompts, a.prompts, a.n_prompts * sizeof(uint32_t));
    assert_verdict(complete(t, b.id, 3), TICKETS_STALE); // a version never published
    tickets_ticket_t b3 = issue(t, 0);
    assert_int_equal(b3.job, a.id);
    assert_int_equal(b3.attempt, 3);
    assert_verdict(complete(t, b3.id, 2), TICKETS_ACCEPTED);
    tickets_counters_t n = counters(t);
    assert_int_equal(n.stale_dropped, 2);
    assert_int_equal(n.tickets_reissued, 2);
    assert_int_equal(n.prompts_lost, 0);
    check_ok(t);

    /* A stale expired attempt while a reissue is out: the reissue carries on. */
    tickets_ticket_t d = issue(t, 0);
    assert_int_equal(tickets_abandon(t, d.id), RLHF_OK);
    tickets_ticket_t d2 = issue(t, 0);
    assert_int_equal(d2.job, d.id);
    assert_verdict(complete(t, d.id, 1), TICKETS_STALE);
    assert_int_equal(tickets_lookup(t, d2.id, &k), RLHF_OK);
    assert_int_equal(k.state, TICKETS_GENERATING);
    tickets_ticket_t fresh = issue(t, 0);
    assert_int_equal(fresh.attempt, 1); // nothing queued
    assert_verdict(complete(t, d2.id, 2), TICKETS_ACCEPTED);
    assert_verdict(complete(t, fresh.id, 2), TICKETS_ACCEPTED);
    check_ok(t);
    tickets_destroy(&t);

    /* max_lag 2: the ticket asks for V - 2 at least; lag 2 is fine, 3 is stale. */
    c.max_lag = 2;
    t = mk(&c);
    assert_int_equal(tickets_set_policy_version(t, 1), RLHF_OK);
    assert_int_equal(issue(t, 0).policy_version, 1); // max(V - L, 1)
    assert_int_equal(tickets_set_policy_version(t, 5), RLHF_OK);
    tickets_ticket_t e = issue(t, 0), f = issue(t, 0);
    assert_int_equal(e.policy_version, 3);
    assert_verdict(complete(t, e.id, 3), TICKETS_ACCEPTED);
    assert_verdict(complete(t, f.id, 2), TICKETS_STALE);
    assert_verdict(complete(t, 1, 5), TICKETS_ACCEPTED);
    assert_int_equal(tickets_set_policy_version(t, (uint64_t)INT64_MAX + 1), RLHF_ERANGE);
    check_ok(t);
    tickets_destroy(&t);
}

/* ---- epochs ---- */

static void test_epoch_overlap(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(4, 2);
    c.max_open_epochs = 2;
    c.max_epochs = 3;
    tickets_t *t = mk(&c);
    tickets_ticket_t a = issue(t, 0), b = issue(t, 0);
    tickets_ticket_t c1 = issue(t, 0), c2 = issue(t, 0); // epoch 1 starts while 0 is out
    assert_int_equal(a.epoch, 0);
    assert_int_equal(b.epoch, 0);
    assert_int_equal(c1.epoch, 1);
    assert_int_equal(c2.epoch, 1);
    tickets_ticket_t k;
    assert_int_equal(tickets_issue(t, 0, &k), RLHF_ENOTFOUND); // window of 2 epochs is full

    /* A reissue goes before anything fresh, and keeps its epoch. */
    assert_int_equal(tickets_abandon(t, a.id), RLHF_OK);
    tickets_ticket_t a2 = issue(t, 10);
    assert_int_equal(a2.job, a.id);
    assert_int_equal(a2.epoch, 0);

    /* Epoch 1 completes first but closes only after epoch 0. */
    assert_verdict(complete(t, c1.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, c2.id, 0), TICKETS_ACCEPTED);
    tickets_counters_t n = counters(t);
    assert_int_equal(n.epochs_finished, 0);
    assert_int_equal(n.epoch, 0);
    assert_int_equal(tickets_issue(t, 0, &k), RLHF_ENOTFOUND);
    check_ok(t);
    assert_verdict(complete(t, b.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, a2.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, a.id, 0), TICKETS_DUPLICATE);
    n = counters(t);
    assert_int_equal(n.epochs_finished, 2);
    assert_int_equal(n.epoch, 2);
    check_ok(t);

    /* The last epoch (max_epochs = 3), then the stream is dry. */
    a = issue(t, 20);
    b = issue(t, 20);
    assert_int_equal(a.epoch, 2);
    assert_int_equal(tickets_issue(t, 20, &k), RLHF_ENOTFOUND);
    assert_false(tickets_finished(t));
    assert_verdict(complete(t, a.id, 0), TICKETS_ACCEPTED);
    assert_verdict(complete(t, b.id, 0), TICKETS_ACCEPTED);
    assert_true(tickets_finished(t));
    n = counters(t);
    assert_int_equal(n.prompts_completed, 12);
    assert_int_equal(n.epoch_prompts_done, 0);
    check_ok(t);
    tickets_destroy(&t);
}

/* ---- two stages ---- */

static void test_two_stage(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(8, 2);
    c.two_stage = true;
    c.max_lag = 1;
    c.max_open_epochs = 2;
    tickets_t *t = mk(&c);
    assert_int_equal(tickets_set_policy_version(t, 1), RLHF_OK);
    tickets_ticket_t k;
    assert_int_equal(tickets_score_issue(t, 0, &k), RLHF_ENOTFOUND); // nothing generated yet

    tickets_ticket_t a = issue(t, 0);
    assert_verdict(scored(t, a.id), TICKETS_UNKNOWN); // nothing generated: a bogus reply
    assert_verdict(complete(t, a.id, 1), TICKETS_ACCEPTED);
    assert_int_equal(tickets_lookup(t, a.id, &k), RLHF_OK);
    assert_int_equal(k.state, TICKETS_GENERATED);
    assert_int_equal(k.rollout_version, 1);
    assert_verdict(complete(t, a.id, 1), TICKETS_DUPLICATE);
    assert_int_equal(tickets_abandon(t, a.id), RLHF_ENOTFOUND); // past generation
    size_t n_ex;
    assert_int_equal(tickets_expire(t, 10000, NULL, 0, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 0); // no generation deadline once generated
    tickets_counters_t n = counters(t);
    assert_int_equal(n.tickets_completed, 0); // done only when scored
    assert_int_equal(n.tickets_open, 1);
    check_ok(t);

    /* Scoring deadline: the same ticket id is handed out again (re-score). */
    tickets_ticket_t s1;
    assert_int_equal(tickets_score_issue(t, 1000, &s1), RLHF_OK);
    assert_int_equal(s1.id, a.id);
    assert_int_equal(s1.attempt, 1);
    assert_int_equal(s1.state, TICKETS_SCORING);
    assert_int_equal(s1.deadline_ms, 50);
    assert_int_equal(s1.deadline_at_ms, 1050);
    assert_int_equal(s1.rollout_version, 1);
    assert_memory_equal(s1.prompts, a.prompts, a.n_prompts * sizeof(uint32_t));
    assert_int_equal(tickets_score_issue(t, 1000, &k), RLHF_ENOTFOUND);
    tickets_expired_t ex[2];
    assert_int_equal(tickets_expire(t, 1049, ex, 2, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 0);
    assert_int_equal(tickets_expire(t, 1050, ex, 2, &n_ex), RLHF_OK);
    assert_int_equal(n_ex, 1);
    assert_int_equal(ex[0].id, a.id);
    assert_int_equal(ex[0].stage, TICKETS_STAGE_SCORE);
    tickets_ticket_t s2;
    assert_int_equal(tickets_score_issue(t, 1100, &s2), RLHF_OK);
    assert_int_equal(s2.id, a.id);
    assert_int_equal(s2.attempt, 2);
    assert_verdict(scored(t, a.id), TICKETS_ACCEPTED);  // either reply wins first
    assert_verdict(scored(t, a.id), TICKETS_DUPLICATE); // the other is late
    assert_verdict(complete(t, a.id, 1), TICKETS_DUPLICATE);
    n = counters(t);
    assert_int_equal(n.tickets_completed, 1);
    assert_int_equal(n.scores_issued, 2);
    assert_int_equal(n.scores_reissued, 1);
    assert_int_equal(n.scores_expired, 1);
    check_ok(t);

    /* A reward worker that dies: re-score at once; the generation attempt that lost is a duplicate. */
    tickets_ticket_t b = issue(t, 2000);
    assert_int_equal(tickets_abandon(t, b.id), RLHF_OK);
    tickets_ticket_t b2 = issue(t, 2000);
    assert_int_equal(b2.job, b.id);
    assert_verdict(complete(t, b.id, 1), TICKETS_ACCEPTED); // the expired original wins stage 1
    assert_verdict(complete(t, b2.id, 1), TICKETS_DUPLICATE);
    assert_verdict(scored(t, b2.id), TICKETS_DUPLICATE); // b2's rollouts were never held
    assert_int_equal(tickets_score_issue(t, 2000, &s1), RLHF_OK);
    assert_int_equal(s1.id, b.id);
    assert_int_equal(tickets_score_abandon(t, b.id), RLHF_OK);
    assert_int_equal(tickets_score_abandon(t, b.id), RLHF_ENOTFOUND);
    assert_int_equal(tickets_score_issue(t, 2000, &s2), RLHF_OK);
    assert_int_equal(s2.id, b.id);
    assert_int_equal(s2.attempt, 2);
    assert_verdict(scored(t, b.id), TICKETS_ACCEPTED);
    check_ok(t);

    /* Held rollouts that lag too far by the time they are scored: regenerate. */
    tickets_ticket_t d = issue(t, 3000);
    assert_verdict(complete(t, d.id, 1), TICKETS_ACCEPTED);
    assert_int_equal(tickets_score_issue(t, 3000, &s1), RLHF_OK);
    assert_int_equal(tickets_set_policy_version(t, 3), RLHF_OK); // lag 2 > max_lag 1
    assert_verdict(scored(t, d.id), TICKETS_STALE);
    assert_verdict(scored(t, d.id), TICKETS_DUPLICATE);
    assert_int_equal(tickets_score_issue(t, 3000, &k), RLHF_ENOTFOUND);
    tickets_ticket_t d2 = issue(t, 3000);
    assert_int_equal(d2.job, d.id);
    assert_int_equal(d2.attempt, 2);
    assert_int_equal(d2.policy_version, 2);
    assert_verdict(complete(t, d2.id, 1), TICKETS_STALE); // stage 1 checks too
    tickets_ticket_t d3 = issue(t, 3000);
    assert_verdict(complete(t, d3.id, 2), TICKETS_ACCEPTED);
    assert_int_equal(tickets_score_issue(t, 3000, &s1), RLHF_OK);
    assert_int_equal(s1.id, d3.id);
    assert_int_equal(s1.attempt, 1); // first scoring of these rollouts
    assert_verdict(scored(t, d3.id), TICKETS_ACCEPTED);
    n = counters(t);
    assert_int_equal(n.stale_dropped, 2);
    assert_int_equal(n.tickets_completed, 3);
    assert_int_equal(n.tickets_open, 0);
    assert_int_equal(n.prompts_lost, 0);
    check_ok(t);
    tickets_destroy(&t);
}

/* ---- counters as JSON ---- */

static void test_counters_json(void **state) {
    (void)state;
    tickets_config_t c = cfg_small(2, 2);
    tickets_t *t = mk(&c);
    tickets_ticket_t a = issue(t, 0);
    assert_verdict(complete(t, a.id, 0), TICKETS_ACCEPTED);
    json_t *j = NULL;
    assert_int_equal(tickets_counters_json(t, &j), RLHF_OK);
    const char *keys[] = {"tickets_issued", "tickets_completed", "tickets_reissued", "duplicates_dropped",
                          "stale_dropped",  "prompts_lost",      "prompts_reused",   "epochs_finished"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) assert_true(json_is_integer(json_object_get(j, keys[i])));
    assert_int_equal(json_integer_value(json_object_get(j, "tickets_issued")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "prompts_lost")), 0);
    json_t *eps = json_object_get(j, "epochs");
    assert_int_equal(json_array_size(eps), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(eps, 0), "used_once")), 2);
    json_decref(j);
    tickets_destroy(&t);
}

/* ---- save / load ---- */

/* A two-stage table with something in every state and two open epochs. */
static tickets_t *busy_table(tickets_config_t *c) {
    *c = cfg_small(6, 2);
    c->two_stage = true;
    c->max_lag = 1;
    c->max_open_epochs = 2;
    tickets_t *t = mk(c);
    assert_int_equal(tickets_set_policy_version(t, 2), RLHF_OK);
    tickets_ticket_t k[3];
    for (int i = 0; i < 3; i++) k[i] = issue(t, 0); // epoch 0
    assert_verdict(complete(t, k[0].id, 2), TICKETS_ACCEPTED);
    tickets_ticket_t s;
    assert_int_equal(tickets_score_issue(t, 0, &s), RLHF_OK);
    assert_verdict(scored(t, k[0].id), TICKETS_ACCEPTED); // done
    assert_verdict(complete(t, k[1].id, 2), TICKETS_ACCEPTED);
    assert_int_equal(tickets_score_issue(t, 10, &s), RLHF_OK); // k1 scoring
    assert_int_equal(tickets_abandon(t, k[2].id), RLHF_OK);    // k2 queued
    tickets_ticket_t e1 = issue(t, 20);                        // reissue of k2
    assert_int_equal(e1.job, k[2].id);
    tickets_ticket_t f = issue(t, 20); // epoch 1
    assert_int_equal(f.epoch, 1);
    assert_verdict(complete(t, f.id, 1), TICKETS_ACCEPTED); // generated, waiting for a scorer
    check_ok(t);
    return t;
}

static void test_save_load(void **state) {
    (void)state;
    tickets_config_t c;
    tickets_t *t = busy_table(&c);
    char err[512];
    char *s1 = save_text(t, 30);

    /* exact round trip */
    tickets_t *u = NULL;
    assert_int_equal(load_text(&u, &c, s1, 30, 0, err, sizeof err), RLHF_OK);
    char *s2 = save_text(u, 30);
    assert_string_equal(s1, s2);
    free(s2);
    tickets_counters_t a = counters(t), b = counters(u);
    assert_memory_equal(&a, &b, sizeof a);
    /* and it behaves the same */
    tickets_ticket_t x, y;
    assert_int_equal(tickets_issue(t, 40, &x), RLHF_OK);
    assert_int_equal(tickets_issue(u, 40, &y), RLHF_OK);
    assert_int_equal(x.id, y.id);
    assert_int_equal(x.job, y.job);
    assert_int_equal(x.attempt, y.attempt);
    assert_memory_equal(x.prompts, y.prompts, x.n_prompts * sizeof(uint32_t));
    tickets_destroy(&u);

    /* deadlines keep their remaining time on a new clock */
    assert_int_equal(load_text(&u, &c, s1, 1000030, 0, err, sizeof err), RLHF_OK);
    tickets_ticket_t k1, k2;
    assert_int_equal(tickets_lookup(t, 4, &k1), RLHF_OK); // the reissue of job 3 (ticket 3 was abandoned)
    assert_int_equal(tickets_lookup(u, 4, &k2), RLHF_OK);
    assert_int_equal(k2.deadline_at_ms, k1.deadline_at_ms + 1000000);
    assert_int_equal(tickets_lookup(u, 2, &k2), RLHF_OK); // scoring: its deadline moves too
    assert_int_equal(k2.state, TICKETS_SCORING);
    assert_int_equal(k2.deadline_at_ms, 10 + 50 + 1000000);
    tickets_destroy(&u);

    /* config identity */
    tickets_config_t bad = c;
    bad.seed = 7;
    assert_int_equal(load_text(&u, &bad, s1, 30, 0, err, sizeof err), RLHF_EMISMATCH);
    assert_non_null(strstr(err, "seed"));
    assert_null(u);
    bad = c;
    bad.n_prompts = 7;
    assert_int_equal(load_text(&u, &bad, s1, 30, 0, err, sizeof err), RLHF_EMISMATCH);
    assert_non_null(strstr(err, "n_prompts"));
    bad = c;
    bad.two_stage = false;
    assert_int_equal(load_text(&u, &bad, s1, 30, 0, err, sizeof err), RLHF_EMISMATCH);
    bad = c;
    bad.gen_timeout_ms = 5000; // not part of the identity: applies from now on
    assert_int_equal(load_text(&u, &bad, s1, 30, 0, err, sizeof err), RLHF_OK);
    assert_int_equal(tickets_config(u)->gen_timeout_ms, 5000);
    tickets_destroy(&u);

    /* tampered or broken states are refused with the reason */
    struct {
        const char *path, *key;
        json_t *value;
        const char *want;
        rlhf_err_t rc;
    } cases[] = {
        {"counters", "tickets_issued", json_integer(99), "tickets_issued", RLHF_EFORMAT},
        {"counters", "prompts_completed", json_integer(3), "prompts_completed", RLHF_EFORMAT},
        {"counters", "stale_dropped", json_string("x"), "counters.stale_dropped", RLHF_EFORMAT},
        {"", "next_id", json_integer(3), "", RLHF_ERANGE}, // ids above it exist
        {"", "epoch_next", json_integer(5), "open epochs", RLHF_ERANGE},
        {"", "format", json_string("rlhf-tickets-0"), "format", RLHF_EFORMAT},
        {"", "seed", json_string("42"), "seed", RLHF_EFORMAT},
        {"jobs0", "state", json_string("flying"), "flying", RLHF_EFORMAT},
        {"jobs0", "first", json_integer(3), "overlap", RLHF_EFORMAT},
        {"jobs0", "n", json_integer(3), "", RLHF_EFORMAT},
        {"tickets0", "job", json_integer(1), "not an open job", RLHF_EFORMAT},
        {"tickets2", "expired", json_true(), "live attempts", RLHF_EFORMAT},
        {"", "jobs", NULL, "'jobs' is missing", RLHF_EFORMAT},
        {"open_epochs0", "pos", json_integer(3), "", RLHF_ERANGE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_error_t je;
        json_t *root = json_loads(s1, 0, &je), *obj = root;
        assert_non_null(root);
        if (strcmp(cases[i].path, "counters") == 0)
            obj = json_object_get(root, "counters");
        else if (strcmp(cases[i].path, "jobs0") == 0)
            obj = json_array_get(json_object_get(root, "jobs"), 0);
        else if (strncmp(cases[i].path, "tickets", 7) == 0)
            obj = json_array_get(json_object_get(root, "tickets"), (size_t)(cases[i].path[7] - '0'));
        else if (strcmp(cases[i].path, "open_epochs0") == 0)
            obj = json_array_get(json_object_get(root, "open_epochs"), 0);
        if (cases[i].value)
            json_object_set_new(obj, cases[i].key, cases[i].value);
        else
            json_object_del(obj, cases[i].key);
        err[0] = '\0';
        rlhf_err_t rc = tickets_load(&u, &c, root, 30, 0, err, sizeof err);
        json_decref(root);
        if (rc != cases[i].rc || !strstr(err, cases[i].want))
            fail_msg("case %zu (%s.%s): got %s '%s', want %s containing '%s'", i, cases[i].path, cases[i].key,
                     rlhf_strerror(rc), err, rlhf_strerror(cases[i].rc), cases[i].want);
        assert_null(u);
        print_message("  refused as expected: %s\n", err);
    }
    free(s1);
    tickets_destroy(&t);
}

/* A learner restarted from a checkpoint: ids of the lost future cannot be mistaken. */
static void test_load_restart(void **state) {
    (void)state;
    tickets_config_t c;
    tickets_t *t = busy_table(&c);
    char err[512];
    char *s = save_text(t, 30);
    /* after the checkpoint, the old process went on issuing, then crashed */
    tickets_ticket_t lost = issue(t, 35);
    tickets_ticket_t live;
    assert_int_equal(tickets_lookup(t, 4, &live), RLHF_OK); // issued before the checkpoint, still out
    tickets_destroy(&t);

    assert_int_equal(load_text(&t, &c, s, 0, TICKETS_LOAD_RESTART, err, sizeof err), RLHF_OK);
    check_ok(t);
    tickets_ticket_t k;
    assert_int_equal(tickets_lookup(t, 4, &k), RLHF_OK);
    assert_true(k.expired); // expired at once: reissued now, may still win
    assert_int_equal(tickets_lookup(t, 2, &k), RLHF_OK);
    assert_int_equal(k.state, TICKETS_QUEUED);                       // its held rollouts died with the old process
    assert_int_equal(tickets_score_issue(t, 0, &k), RLHF_ENOTFOUND); // nothing held

    /* new ids live in a fresh block */
    tickets_ticket_t r1 = issue(t, 40);
    assert_int_equal(r1.id, TICKETS_ID_BLOCK);
    assert_int_equal(r1.job, 2); // oldest queued job first
    /* the old process's post-checkpoint ticket is dropped, not taken for r1 or anything else */
    assert_true(lost.id < TICKETS_ID_BLOCK);
    assert_verdict(complete(t, lost.id, 2), TICKETS_DUPLICATE);
    /* a pre-checkpoint ticket whose actor survived can still win */
    assert_verdict(complete(t, live.id, 2), TICKETS_ACCEPTED);
    assert_verdict(complete(t, r1.id, 2), TICKETS_ACCEPTED);
    tickets_counters_t n = counters(t);
    assert_int_equal(n.prompts_lost, 0);
    check_ok(t);
    free(s);
    tickets_destroy(&t);
}

/* ---- the simulation ---- */

enum { FATE_OK, FATE_DIE, FATE_LATE, FATE_STALE, FATE_DOUBLE, FATE_FUTURE };

typedef struct {
    int busy; // holds ticket id until done_at
    int dead; // died holding id; a replacement joins at done_at
    uint64_t id;
    int64_t done_at;
    int fate;
    uint64_t version; // the version it reports (actors)
} sim_worker_t;

typedef struct { // per ticket id (ids are dense from 1); job fields are used at index job id
    uint64_t job, epoch, seed;
    uint32_t first, n;
    uint32_t *prompts;
    bool resolved;   // this ticket came back (accepted, stale) or its job got a result
    bool job_done;   // the job's final result was accepted
    uint64_t winner; // two stages: ticket whose rollouts the learner holds, 0 = none
    uint64_t rv;     // their version
} sim_tk_t;

typedef struct {
    uint64_t seed;
    bool two_stage;
    uint32_t max_lag, open_epochs, n_prompts, ppt;
    uint64_t epochs;
    int actors, scorers;
    int fault_steps; // faults are injected during these steps, then the run drains
    int save_every;  // save/load the table every this many steps; 0 = never
} sim_opts_t;

typedef struct {
    tickets_counters_t counters;
    uint64_t trace;    // hash of every decision the table made
    char *final_state; // saved at the end (caller frees)
    int steps;
} sim_result_t;

typedef struct {
    const sim_opts_t *o;
    tickets_config_t cfg;
    tickets_t *t;
    rng_t rng;
    int64_t now;
    uint64_t version;
    uint64_t trace;
    sim_tk_t *tk;
    size_t n_tk, cap_tk;
    uint8_t *used; // (epochs, n_prompts) the test's own ledger
    uint64_t issued, reissued, accepted_final, accepted_stage1, dup, stale, unknown;
    uint64_t since_publish;
    bool faults;
} sim_t;

static void mix(sim_t *s, uint64_t x) {
    s->trace = rng_mix(s->trace ^ x);
}

static bool chance(sim_t *s, float p) {
    return rng_float(&s->rng) < p;
}

static bool lag_ok(const sim_t *s, uint64_t r) {
    return r <= s->version && s->version - r <= s->o->max_lag;
}

static sim_tk_t *sim_tk(sim_t *s, uint64_t id) {
    if (id == 0 || id > s->n_tk) fail_msg("sim: ticket %" PRIu64 " unknown to the test", id);
    return &s->tk[id - 1];
}

static void sim_record_issue(sim_t *s, const tickets_ticket_t *k) {
    if (k->id != s->n_tk + 1) fail_msg("ticket id %" PRIu64 " is not the next one (%zu)", k->id, s->n_tk + 1);
    if (s->n_tk == s->cap_tk) {
        s->cap_tk = s->cap_tk ? 2 * s->cap_tk : 256;
        s->tk = realloc(s->tk, s->cap_tk * sizeof *s->tk);
        assert_non_null(s->tk);
    }
    sim_tk_t *r = &s->tk[s->n_tk++];
    memset(r, 0, sizeof *r);
    r->job = k->job;
    r->epoch = k->epoch;
    r->seed = k->seed;
    r->first = k->first;
    r->n = k->n_prompts;
    r->prompts = malloc(k->n_prompts * sizeof(uint32_t));
    assert_non_null(r->prompts);
    memcpy(r->prompts, k->prompts, k->n_prompts * sizeof(uint32_t));
    s->issued++;
    uint64_t want_v = s->version == 0 ? 0 : (s->version > s->o->max_lag ? s->version - s->o->max_lag : 1);
    assert_int_equal(k->policy_version, want_v);
    assert_true(k->n_prompts >= 1 && k->n_prompts <= s->o->ppt);
    assert_true(k->epoch < s->o->epochs);
    if (k->attempt == 1) {
        assert_int_equal(k->job, k->id);
    } else { // a reissue carries exactly the job's prompt set
        s->reissued++;
        const sim_tk_t *j = sim_tk(s, k->job);
        assert_false(j->job_done);
        assert_int_equal(j->winner, 0);
        assert_int_equal(j->n, k->n_prompts);
        assert_int_equal(j->epoch, k->epoch);
        assert_int_equal(j->seed, k->seed);
        assert_memory_equal(j->prompts, k->prompts, k->n_prompts * sizeof(uint32_t));
    }
    mix(s, k->id);
    mix(s, k->job);
    mix(s, k->epoch);
    mix(s, k->first);
    mix(s, (uint64_t)k->deadline_at_ms);
}

/* The job's final result: its prompts are used, exactly once by the ledger. */
static void sim_job_done(sim_t *s, uint64_t job) {
    sim_tk_t *j = sim_tk(s, job);
    assert_false(j->job_done);
    j->job_done = true;
    for (uint32_t i = 0; i < j->n; i++) {
        uint8_t *u = &s->used[j->epoch * s->o->n_prompts + j->prompts[i]];
        if (*u != 0) fail_msg("epoch %" PRIu64 " prompt %" PRIu32 " used twice", j->epoch, j->prompts[i]);
        (*u)++;
    }
    s->accepted_final++;
    s->since_publish++;
}

/* Every other attempt of the job is moot once one has won. */
static void sim_resolve_job(sim_t *s, uint64_t job) {
    for (size_t i = 0; i < s->n_tk; i++)
        if (s->tk[i].job == job) s->tk[i].resolved = true;
}

static void sim_complete(sim_t *s, uint64_t id, uint64_t r) {
    tickets_verdict_t v;
    assert_int_equal(tickets_complete(s->t, id, r, &v), RLHF_OK);
    mix(s, 100 + (uint64_t)v);
    sim_tk_t *k = sim_tk(s, id), *j = sim_tk(s, k->job);
    switch (v) {
    case TICKETS_ACCEPTED:
        if (k->resolved || j->job_done || j->winner)
            fail_msg("ticket %" PRIu64 " accepted, but its job %" PRIu64 " already had a result", id, k->job);
        if (!lag_ok(s, r))
            fail_msg("ticket %" PRIu64 " accepted with version %" PRIu64 " at policy %" PRIu64, id, r, s->version);
        sim_resolve_job(s, k->job);
        s->accepted_stage1++;
        if (s->o->two_stage) {
            j->winner = id;
            j->rv = r;
        } else {
            sim_job_done(s, k->job);
        }
        break;
    case TICKETS_DUPLICATE:
        s->dup++;
        if (!k->resolved && !j->job_done && !j->winner)
            fail_msg("ticket %" PRIu64 " called a duplicate, but nothing of its job came back", id);
        break;
    case TICKETS_STALE:
        s->stale++;
        if (k->resolved || lag_ok(s, r))
            fail_msg("ticket %" PRIu64 " called stale with version %" PRIu64 " at policy %" PRIu64, id, r, s->version);
        k->resolved = true;
        break;
    default: fail_msg("ticket %" PRIu64 ": unexpected verdict %s", id, tickets_verdict_name(v));
    }
}

static void sim_scored(sim_t *s, uint64_t id) {
    tickets_verdict_t v;
    assert_int_equal(tickets_scored(s->t, id, &v), RLHF_OK);
    mix(s, 200 + (uint64_t)v);
    sim_tk_t *k = sim_tk(s, id), *j = sim_tk(s, k->job);
    switch (v) {
    case TICKETS_ACCEPTED:
        if (j->winner != id || j->job_done) fail_msg("scored %" PRIu64 " accepted but it is not the held winner", id);
        if (!lag_ok(s, j->rv)) fail_msg("scored %" PRIu64 " accepted with a stale version", id);
        sim_job_done(s, k->job);
        break;
    case TICKETS_DUPLICATE:
        s->dup++;
        if (j->winner == id && !j->job_done) fail_msg("scored %" PRIu64 " called a duplicate, but it is pending", id);
        break;
    case TICKETS_STALE:
        s->stale++;
        if (j->winner != id || lag_ok(s, j->rv)) fail_msg("scored %" PRIu64 " called stale wrongly", id);
        j->winner = 0; // regenerated: a new attempt will be issued
        j->rv = 0;
        break;
    default: fail_msg("scored %" PRIu64 ": unexpected verdict %s", id, tickets_verdict_name(v));
    }
}

static int pick_fate(sim_t *s) {
    if (!s->faults) return FATE_OK;
    float u = rng_float(&s->rng);
    if (u < 0.05f) return FATE_DIE;
    if (u < 0.13f) return FATE_LATE;
    if (u < 0.20f) return FATE_STALE;
    if (u < 0.25f) return FATE_DOUBLE;
    if (u < 0.26f) return FATE_FUTURE;
    return FATE_OK;
}

static void sim_actor(sim_t *s, sim_worker_t *w) {
    if (w->dead) {
        if (s->now < w->done_at) return;
        if (chance(s, 0.5f)) { // the learner noticed (heartbeats): reissue at once
            rlhf_err_t rc = tickets_abandon(s->t, w->id);
            assert_true(rc == RLHF_OK || rc == RLHF_ENOTFOUND);
            mix(s, 300 + (uint64_t)rc);
        }
        memset(w, 0, sizeof *w); // a replacement joins
        return;
    }
    if (w->busy && s->now >= w->done_at) {
        sim_complete(s, w->id, w->version);
        if (w->fate == FATE_DOUBLE) sim_complete(s, w->id, w->version);
        w->busy = 0;
    }
    if (w->busy || !chance(s, 0.8f)) return;
    tickets_ticket_t k;
    rlhf_err_t rc = tickets_issue(s->t, s->now, &k);
    mix(s, 400 + (uint64_t)rc);
    if (rc == RLHF_ENOTFOUND) return;
    assert_int_equal(rc, RLHF_OK);
    sim_record_issue(s, &k);
    w->busy = 1;
    w->id = k.id;
    w->fate = pick_fate(s);
    w->version = s->version; // fetched the latest weights
    w->done_at = s->now + 20 + (int64_t)rng_below(&s->rng, 150);
    switch (w->fate) {
    case FATE_DIE:
        w->busy = 0;
        w->dead = 1;
        w->done_at = s->now + 50 + (int64_t)rng_below(&s->rng, 300);
        break;
    case FATE_LATE: w->done_at = s->now + s->cfg.gen_timeout_ms + (int64_t)rng_below(&s->rng, 400); break;
    case FATE_STALE: // never fetched: an old version
        w->version = s->version > s->o->max_lag ? s->version - s->o->max_lag - 1 - rng_below(&s->rng, 2) : 0;
        if (w->version > s->version) w->version = 0;
        break;
    case FATE_FUTURE: w->version = s->version + 1; break;
    default: break;
    }
}

static void sim_scorer(sim_t *s, sim_worker_t *w) {
    if (w->dead) {
        if (s->now < w->done_at) return;
        if (chance(s, 0.5f)) {
            rlhf_err_t rc = tickets_score_abandon(s->t, w->id);
            assert_true(rc == RLHF_OK || rc == RLHF_ENOTFOUND);
            mix(s, 500 + (uint64_t)rc);
        }
        memset(w, 0, sizeof *w);
        return;
    }
    if (w->busy && s->now >= w->done_at) {
        sim_scored(s, w->id);
        if (w->fate == FATE_DOUBLE) sim_scored(s, w->id);
        w->busy = 0;
    }
    if (w->busy || !chance(s, 0.8f)) return;
    tickets_ticket_t k;
    rlhf_err_t rc = tickets_score_issue(s->t, s->now, &k);
    mix(s, 600 + (uint64_t)rc);
    if (rc == RLHF_ENOTFOUND) return;
    assert_int_equal(rc, RLHF_OK);
    const sim_tk_t *j = sim_tk(s, sim_tk(s, k.id)->job);
    if (j->winner != k.id || j->job_done) fail_msg("score work for %" PRIu64 ", which is not a held winner", k.id);
    assert_int_equal(k.rollout_version, j->rv);
    mix(s, k.id);
    mix(s, k.attempt);
    w->busy = 1;
    w->id = k.id;
    w->fate = pick_fate(s);
    w->done_at = s->now + 10 + (int64_t)rng_below(&s->rng, 80);
    if (w->fate == FATE_DIE) {
        w->busy = 0;
        w->dead = 1;
        w->done_at = s->now + 50 + (int64_t)rng_below(&s->rng, 300);
    } else if (w->fate == FATE_LATE) {
        w->done_at = s->now + s->cfg.score_timeout_ms + (int64_t)rng_below(&s->rng, 200);
    }
}

static void sim_save_load(sim_t *s) {
    char *text = save_text(s->t, s->now);
    tickets_destroy(&s->t);
    char err[512] = "";
    if (load_text(&s->t, &s->cfg, text, s->now, 0, err, sizeof err) != RLHF_OK) fail_msg("reload: %s", err);
    char *again = save_text(s->t, s->now);
    assert_string_equal(text, again);
    free(again);
    free(text);
}

static void sim_check(sim_t *s) {
    check_ok(s->t);
    tickets_counters_t c = counters(s->t);
    assert_int_equal(c.prompts_lost, 0);
    assert_int_equal(c.prompts_reused, 0);
    assert_int_equal(c.tickets_issued, s->issued);
    assert_int_equal(c.tickets_reissued, s->reissued);
    assert_int_equal(c.tickets_completed, s->accepted_final);
    assert_int_equal(c.duplicates_dropped, s->dup);
    assert_int_equal(c.stale_dropped, s->stale);
    assert_int_equal(c.unknown_dropped, s->unknown);
}

static sim_result_t run_sim(const sim_opts_t *o) {
    sim_t s = {.o = o};
    s.cfg = cfg_small(o->n_prompts, o->ppt);
    s.cfg.seed = o->seed;
    s.cfg.two_stage = o->two_stage;
    s.cfg.max_lag = o->max_lag;
    s.cfg.max_open_epochs = o->open_epochs;
    s.cfg.max_epochs = o->epochs;
    s.cfg.gen_timeout_ms = 200;
    s.cfg.score_timeout_ms = 120;
    s.t = mk(&s.cfg);
    rng_init(&s.rng, o->seed ^ 0x51u);
    s.used = calloc(o->epochs * o->n_prompts, 1);
    sim_worker_t *actors = calloc((size_t)o->actors, sizeof *actors);
    sim_worker_t *scorers = calloc((size_t)(o->scorers ? o->scorers : 1), sizeof *scorers);
    assert_non_null(s.used);
    assert_non_null(actors);
    assert_non_null(scorers);
    s.version = 1;
    assert_int_equal(tickets_set_policy_version(s.t, 1), RLHF_OK);

    int step = 0;
    for (; !tickets_finished(s.t); step++) {
        if (step > 200000) fail_msg("the run did not finish: %s", "livelock?");
        s.faults = step < o->fault_steps;
        s.now += 1 + (int64_t)rng_below(&s.rng, 20);
        tickets_expired_t ex[8];
        size_t n_ex;
        assert_int_equal(tickets_expire(s.t, s.now, ex, 8, &n_ex), RLHF_OK);
        mix(&s, n_ex);
        for (size_t i = 0; i < n_ex && i < 8; i++) mix(&s, ex[i].id * 4 + ex[i].stage);
        for (int i = 0; i < o->actors; i++) sim_actor(&s, &actors[i]);
        for (int i = 0; i < o->scorers; i++) sim_scorer(&s, &scorers[i]);
        if (s.faults && chance(&s, 0.02f)) { // junk from the network
            uint64_t id = chance(&s, 0.5f) ? 0 : s.issued + 1 + rng_below(&s.rng, 1000);
            tickets_verdict_t v;
            if (o->two_stage && chance(&s, 0.5f))
                assert_int_equal(tickets_scored(s.t, id, &v), RLHF_OK);
            else
                assert_int_equal(tickets_complete(s.t, id, s.version, &v), RLHF_OK);
            assert_verdict(v, TICKETS_UNKNOWN);
            s.unknown++;
        }
        if (s.since_publish >= 3) { // the learner trained on a batch: a new policy version
            s.version++;
            s.since_publish = 0;
            assert_int_equal(tickets_set_policy_version(s.t, s.version), RLHF_OK);
        }
        if (step % 97 == 0) sim_check(&s);
        if (o->save_every && step % o->save_every == o->save_every - 1) sim_save_load(&s);
    }
    sim_check(&s);
    assert_true(step > o->fault_steps); // it ran with faults, then drained without

    /* Exactly once, by the test's own ledger. */
    for (uint64_t e = 0; e < o->epochs; e++) {
        for (uint32_t p = 0; p < o->n_prompts; p++)
            if (s.used[e * o->n_prompts + p] != 1)
                fail_msg("epoch %" PRIu64 " prompt %" PRIu32 " used %u times", e, p, s.used[e * o->n_prompts + p]);
        tickets_epoch_t h;
        assert_int_equal(tickets_epoch_stats(s.t, e, &h), RLHF_OK);
        assert_int_equal(h.used_once, o->n_prompts);
    }
    sim_result_t res = {.trace = s.trace, .steps = step};
    tickets_counters(s.t, &res.counters);
    const tickets_counters_t *c = &res.counters;
    assert_int_equal(c->epochs_finished, o->epochs);
    assert_int_equal(c->prompts_completed, o->epochs * o->n_prompts);
    assert_int_equal(c->tickets_open + c->jobs_open + c->prompts_pending + c->prompts_lost, 0);
    assert_int_equal(c->tickets_issued, c->tickets_completed + c->stale_dropped + c->tickets_superseded);
    /* the faults really happened */
    assert_true(c->tickets_reissued > 0 && c->duplicates_dropped > 0 && c->stale_dropped > 0);
    if (o->two_stage) assert_true(c->scores_reissued > 0);
    res.final_state = save_text(s.t, s.now);

    for (size_t i = 0; i < s.n_tk; i++) free(s.tk[i].prompts);
    free(s.tk);
    free(s.used);
    free(actors);
    free(scorers);
    tickets_destroy(&s.t);
    return res;
}

static void print_result(const char *name, const sim_opts_t *o, const sim_result_t *r) {
    const tickets_counters_t *c = &r->counters;
    print_message(
        "%s (%s, max_lag %" PRIu32 ", open epochs %" PRIu32 "): %d steps, %" PRIu64 " epochs x %" PRIu32 " prompts\n"
        "  issued %" PRIu64 " = completed %" PRIu64 " + stale %" PRIu64 " + superseded %" PRIu64 " + open %" PRIu64
        "; reissued %" PRIu64 ", expired %" PRIu64 "\n"
        "  duplicates %" PRIu64 ", unknown %" PRIu64 ", scores %" PRIu64 " (reissued %" PRIu64 ", expired %" PRIu64
        "), prompts completed %" PRIu64 ", lost %" PRIu64 ", reused %" PRIu64 "\n",
        name, o->two_stage ? "two stages" : "one stage", o->max_lag, o->open_epochs, r->steps, o->epochs, o->n_prompts,
        c->tickets_issued, c->tickets_completed, c->stale_dropped, c->tickets_superseded, c->tickets_open,
        c->tickets_reissued, c->tickets_expired, c->duplicates_dropped, c->unknown_dropped, c->scores_issued,
        c->scores_reissued, c->scores_expired, c->prompts_completed, c->prompts_lost, c->prompts_reused);
}

static const sim_opts_t sims[] = {
    {.seed = 1,
     .two_stage = false,
     .max_lag = 0,
     .open_epochs = 1,
     .n_prompts = 53,
     .ppt = 4,
     .epochs = 60,
     .actors = 5,
     .fault_steps = 3000},
    {.seed = 2,
     .two_stage = false,
     .max_lag = 2,
     .open_epochs = 2,
     .n_prompts = 61,
     .ppt = 3,
     .epochs = 80,
     .actors = 6,
     .fault_steps = 3000},
    {.seed = 3,
     .two_stage = true,
     .max_lag = 1,
     .open_epochs = 2,
     .n_prompts = 47,
     .ppt = 4,
     .epochs = 60,
     .actors = 5,
     .scorers = 3,
     .fault_steps = 3000},
    {.seed = 4,
     .two_stage = true,
     .max_lag = 0,
     .open_epochs = 3,
     .n_prompts = 29,
     .ppt = 5,
     .epochs = 60,
     .actors = 4,
     .scorers = 2,
     .fault_steps = 3000},
};

static void test_simulation(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof sims / sizeof sims[0]; i++) {
        sim_result_t r = run_sim(&sims[i]);
        char name[32];
        snprintf(name, sizeof name, "simulation %zu", i + 1);
        print_result(name, &sims[i], &r);
        free(r.final_state);
    }
}

/* Save and load in the middle (once, and every 250 steps): the same decisions. */
static void test_simulation_resume(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof sims / sizeof sims[0]; i++) {
        sim_result_t a = run_sim(&sims[i]);
        sim_opts_t o = sims[i];
        o.save_every = a.steps / 2;
        sim_result_t b = run_sim(&o);
        o.save_every = 250;
        sim_result_t c = run_sim(&o);
        assert_int_equal(a.steps, b.steps);
        assert_int_equal(a.trace, b.trace);
        assert_int_equal(a.trace, c.trace);
        assert_memory_equal(&a.counters, &b.counters, sizeof a.counters);
        assert_memory_equal(&a.counters, &c.counters, sizeof a.counters);
        assert_string_equal(a.final_state, b.final_state);
        assert_string_equal(a.final_state, c.final_state);
        print_message("simulation %zu reloaded at step %d, and every 250 steps: the same %d steps, decisions "
                      "(trace %016" PRIx64 "), counters and final state\n",
                      i + 1, a.steps / 2, a.steps, a.trace);
        free(a.final_state);
        free(b.final_state);
        free(c.final_state);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_issue_and_order),
        cmocka_unit_test(test_verdicts),
        cmocka_unit_test(test_expire_reissue),
        cmocka_unit_test(test_abandon),
        cmocka_unit_test(test_stale),
        cmocka_unit_test(test_epoch_overlap),
        cmocka_unit_test(test_two_stage),
        cmocka_unit_test(test_counters_json),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_load_restart),
        cmocka_unit_test(test_simulation),
        cmocka_unit_test(test_simulation_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
