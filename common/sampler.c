/*
 * sampler.c - greedy / temperature / top-k / top-p sampling (see sampler.h).
 *
 * One row costs an argmax, one exp pass that the compiler vectorises (a
 * branch-free polynomial exp, within 1 ulp), a sum in double, then
 * either a cumulative scan (plain), a bounded heap (top-k) or a selection
 * over the survivors of the llama2.c cutoff (top-p). Nothing is fully
 * sorted unless top-k is on, and then only its k tokens.
 *
 * Probabilities are exp((logit - max) / T) left unnormalised in scratch, so
 * the most likely token has mass exactly 1. Sums are accumulated in double.
 *
 * Ranking is by logit (monotone in probability, and free of the ties that
 * rounding in exp would create), higher first, then lower id; NaN ranks as
 * -INFINITY, which makes the order total.
 */
#include "common/sampler.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

void sampler_params_default(sampler_params_t *p) {
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
}

/* ---- helpers ---- */

/* exp(x) for x <= 0 (Cephes expf: Cody-Waite reduction, degree-5 minimax),
 * within 1 ulp of exp; exactly 1 at 0; 0 below -87 and for -inf or NaN.
 * The range test and the selects are integer masks on the bits: a float
 * compare may trap on NaN, which stops the compiler from vectorising. */
static inline float exp_nonpos(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof(bits));
    uint32_t ok = (bits & 0x7fffffffu) <= 0x42ae0000u ? 0xffffffffu : 0u; // |x| <= 87: not NaN nor -inf
    uint32_t xb = (bits & ok) | (0xc2ae0000u & ~ok);                      // x, or -87
    float xc;
    memcpy(&xc, &xb, sizeof(xc));
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f; // round(x / ln 2), in [-126, 0]
    int32_t e = ((int32_t)n + 127) << 23;                              // bits of 2^n
    float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
    float z = r * r;
    float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
               1.6666665459e-1f) *
                  r +
              5.0000001201e-1f;
    y = y * z + r + 1.0f;
    float scale;
    memcpy(&scale, &e, sizeof(scale));
    float v = y * scale;
    uint32_t vb;
    memcpy(&vb, &v, sizeof(vb));
    vb &= ok;
    memcpy(&v, &vb, sizeof(v));
    return v;
}

/* out[i] = exp((x[i] - m) * s) for x (n); requires x[i] <= m. Vectorised at
 * -O3, and at -O2 when OpenMP is on (omp simd). */
static void exp_shifted(float *restrict out, const float *restrict x, int n, float m, float s) {
#ifdef _OPENMP
#pragma omp simd
#endif
    for (int i = 0; i < n; i++) out[i] = exp_nonpos((x[i] - m) * s);
}

/* Sum in double, four chains for throughput. */
static double sum_double(const float *x, int n) {
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

int sampler_argmax(const float *x, int n) {
    /* Strict > keeps the lowest index among equals and never picks a NaN
     * (any comparison with NaN is false). */
    int best = 0;
    float bv = -INFINITY;
    for (int i = 0; i < n; i++)
        if (x[i] > bv) {
            bv = x[i];
            best = i;
        }
    return best;
}

float sampler_logsumexp(const float *x, int n) {
    if (n <= 0) return -INFINITY;
    float m = x[sampler_argmax(x, n)];
    if (!isfinite(m)) return m == m ? m : -INFINITY;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += expf(x[i] - m);
    return (float)((double)m + log(s));
}

void sampler_softmax(float *x, int n) {
    if (n <= 0) return;
    float m = x[sampler_argmax(x, n)];
    double s = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        s += x[i];
    }
    float inv = (float)(1.0 / s);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* ---- ranking ---- */

static inline float rank_key(float x) {
    return x != x ? -INFINITY : x;
}

/* Does token a rank before token b? */
static inline int before(const float *l, int a, int b) {
    float x = rank_key(l[a]), y = rank_key(l[b]);
    return x > y || (x == y && a < b);
}

static inline void swap_int(int *a, int *b) {
    int t = *a;
    *a = *b;
    *b = t;
}

/* A heap of ids with the lowest-ranked at the root. */
static void sift_down(const float *l, int *h, int n, int i) {
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && before(l, h[c], h[c + 1])) c++; // the lower-ranked child
        if (!before(l, h[i], h[c])) return;
        swap_int(&h[i], &h[c]);
        i = c;
    }
}

/* The k best-ranked ids of l (V) into h (k), best first. O(V log k), and
 * close to O(V) when k is small: most tokens lose one comparison with the
 * root. */
static int select_top_k(const float *l, int V, int k, int *h) {
    int n = k < V ? k : V;
    for (int i = 0; i < n; i++) h[i] = i;
    for (int i = n / 2 - 1; i >= 0; i--) sift_down(l, h, n, i);
    /* Every id already in the heap is lower than i, so i ranks before the
     * root exactly when its logit is strictly greater (false for NaN). */
    float root = rank_key(l[h[0]]);
    for (int i = n; i < V; i++) {
        if (l[i] > root) {
            h[0] = i;
            sift_down(l, h, n, 0);
            root = rank_key(l[h[0]]);
        }
    }
    for (int end = n - 1; end > 0; end--) { // heap -> best first
        swap_int(&h[0], &h[end]);
        sift_down(l, h, end, 0);
    }
    return n;
}

static void insertion_sort(const float *l, int *c, int n) {
    for (int i = 1; i < n; i++) {
        int v = c[i], j = i;
        for (; j > 0 && before(l, v, c[j - 1]); j--) c[j] = c[j - 1];
        c[j] = v;
    }
}

/*
 * Nucleus by selection: reorder ids c (n) so that c[0..m) is the smallest
 * set of best-ranked tokens whose mass reaches target, and return m >= 1
 * (target > 0). Quickselect on rank: partition around a pivot; if the
 * better side already reaches the target the nucleus lies inside it,
 * otherwise the better side and the pivot are in and the rest of the
 * target is sought on the worse side. Expected O(n); the kept set comes
 * out in blocks of decreasing rank, unsorted inside a block.
 */
static int select_nucleus(const float *l, const float *prob, int *c, int n, double target) {
    int lo = 0, hi = n; // c[0..lo) kept, c[hi..n) dropped, c[lo..hi) undecided
    double need = target;
    while (hi - lo > 16) {
        /* median of three by rank to c[lo], then Lomuto partition */
        int mid = lo + (hi - lo) / 2, last = hi - 1;
        if (before(l, c[mid], c[lo])) swap_int(&c[mid], &c[lo]);
        if (before(l, c[last], c[lo])) swap_int(&c[last], &c[lo]);
        if (before(l, c[last], c[mid])) swap_int(&c[last], &c[mid]);
        swap_int(&c[lo], &c[mid]); // the median is the pivot, at lo
        int piv = c[lo], p = lo + 1;
        double up = 0.0;
        for (int j = lo + 1; j < hi; j++)
            if (before(l, c[j], piv)) {
                up += prob[c[j]];
                swap_int(&c[j], &c[p++]);
            }
        /* c[lo+1..p) rank before the pivot: move the pivot after them */
        swap_int(&c[lo], &c[p - 1]);
        p--; // pivot at p, better ones in c[lo..p)
        if (up >= need) {
            hi = p;
        } else if (up + prob[c[p]] >= need) {
            return p + 1;
        } else {
            need -= up + prob[c[p]];
            lo = p + 1;
        }
    }
    insertion_sort(l, c + lo, hi - lo);
    double mass = 0.0;
    for (int j = lo; j < hi; j++) {
        mass += prob[c[j]];
        if (mass >= need) return j + 1;
    }
    return hi > 0 ? hi : 1; // rounding left the target just out of reach: keep all
}

/* Token where r falls in the cumulative masses of ids c (n); past the end
 * (a coin >= 1, or rounding), the last token with positive mass. */
static int pick(const float *prob, const int *c, int n, double r) {
    double cdf = 0.0;
    int last = c[0];
    for (int j = 0; j < n; j++) {
        float q = prob[c[j]];
        if (!(q > 0.0f)) continue;
        cdf += q;
        last = c[j];
        if (cdf > r) return c[j];
    }
    return last;
}

/* ---- sampling ---- */

int sampler_sample(const float *logits, int V, const sampler_params_t *p, float coin, float *scratch, int *idx_scratch,
                   float *logprob) {
    if (!logits || V <= 0) return -1;
    sampler_params_t def;
    if (!p) {
        sampler_params_default(&def);
        p = &def;
    }
    int best = sampler_argmax(logits, V);
    float m = logits[best];
    if (!isfinite(m)) { // every logit -inf or NaN, or some +inf: no softmax
        if (logprob) *logprob = NAN;
        return best;
    }
    float T = p->temperature;
    int greedy = !(T > 0.0f); // also NaN
    if (greedy && !logprob) return best;

    /* probabilities, unnormalised: the max has mass 1 */
    float invT = greedy ? 1.0f : 1.0f / T;
    if (!(invT <= FLT_MAX)) invT = FLT_MAX; // tiny T: still 1 at the max, 0 below it
    float *prob = scratch;
    exp_shifted(prob, logits, V, m, invT);
    double sum = sum_double(prob, V);
    if (greedy) { // the log-prob is at temperature 1
        *logprob = (float)-log(sum);
        return best;
    }
    if (!(coin >= 0.0f)) coin = 0.0f; // also NaN; a coin >= 1 falls off the end in pick()

    int k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    int use_p = p->top_p < 1.0f; // NaN: off
    int chosen;
    if (k == V && !use_p) {
        double r = (double)coin * sum, cdf = 0.0;
        chosen = best;
        for (int i = 0; i < V; i++) {
            if (!(prob[i] > 0.0f)) continue;
            cdf += prob[i];
            chosen = i;
            if (cdf > r) break;
        }
    } else {
        int *c = idx_scratch;
        int n;
        if (k < V) {
            n = select_top_k(logits, V, k, c); // best first
            if (use_p) {
                double total = 0.0;
                for (int j = 0; j < n; j++) total += prob[c[j]];
                double target = (double)p->top_p * total, mass = 0.0;
                int keep = 1; // top_p <= 0 keeps the best one
                for (int j = 0; j < n && target > 0.0; j++) {
                    mass += prob[c[j]];
                    keep = j + 1;
                    if (mass >= target) break;
                }
                n = keep;
            }
        } else if (!(p->top_p > 0.0f)) {
            c[0] = best;
            n = 1;
        } else {
            /* llama2.c: a token with probability below (1 - top_p) / (V - 1)
             * is never in the nucleus (all the tokens ranked after it would
             * weigh less than 1 - top_p together). The cutoff is capped at
             * the max's mass (1) so the max survives, and shaved so that
             * rounding never drops a member. */
            double cut = (1.0 - (double)p->top_p) / (double)(V - 1) * sum * (1.0 - 1e-5);
            float cutoff = cut < 1.0 ? (float)cut : 1.0f;
            n = 0;
            for (int i = 0; i < V; i++)
                if (prob[i] >= cutoff) c[n++] = i;
            n = select_nucleus(logits, prob, c, n, (double)p->top_p * sum);
        }
        double kept = 0.0;
        for (int j = 0; j < n; j++)
            if (prob[c[j]] > 0.0f) kept += prob[c[j]];
        chosen = pick(prob, c, n, (double)coin * kept);
    }
    if (logprob) *logprob = (float)(((double)logits[chosen] - m) / (double)T - log(sum));
    return chosen;
}
