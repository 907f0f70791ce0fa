/*
 * kernels.c - transformer kernels (see kernels.h for shapes and contracts).
 *
 * Matrix products go through OpenBLAS sgemm; everything else is plain C
 * written so that gcc vectorises it, with OpenMP over rows when enabled.
 * OpenMP regions never call BLAS, so the two thread pools take turns.
 */
#include "common/kernels.h"
#include "common/vmath.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef RLHF_OPENMP
#include <omp.h>
#define OMP_FOR      _Pragma("omp parallel for schedule(static)")
#define OMP_FOR_SIMD _Pragma("omp parallel for simd schedule(static)")
#else
#define OMP_FOR
#define OMP_FOR_SIMD _Pragma("omp simd")
#endif
/* Reductions: let the compiler reassociate so the loop vectorises. */
#define SIMD_SUM(var) _Pragma(RLHF__STR(omp simd reduction(+ : var)))
#define SIMD_MAX(var) _Pragma(RLHF__STR(omp simd reduction(max : var)))
#define RLHF__STR(x)  #x

static int g_threads = 0; /* set once at start-up by kernels_set_threads */

/*
 * Threads: with OpenMP there is ONE pool. OpenBLAS runs single-threaded
 * inside each OpenMP thread and gemm() below splits every large product
 * into per-thread slabs, so OpenBLAS workers and OpenMP workers never spin
 * against each other on the same cores. Without OpenMP, OpenBLAS threads.
 */
void kernels_set_threads(int n) {
    if (n <= 0) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n <= 0) n = 1;
    g_threads = n;
#ifdef RLHF_OPENMP
    openblas_set_num_threads(1);
    omp_set_num_threads(n);
#else
    openblas_set_num_threads(n);
#endif
}

void kernels_init_process(char **argv) {
#ifdef RLHF_OPENMP
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    setenv("GOMP_SPINCOUNT", RLHF_SPINCOUNT, 1);
    execv("/proc/self/exe", argv); /* returns only on failure: run as we are */
#else
    (void)argv;
#endif
}

int kernels_get_threads(void) {
    return g_threads > 0 ? g_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
}

/* Row-major C (M,N) = alpha op(A) op(B) + beta C, split over threads along
 * the larger of M and N. Inside a parallel region it runs serially. */
static void gemm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc) {
    if (g_threads == 0) kernels_set_threads(0);
    enum CBLAS_TRANSPOSE TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
    if (M == 1 && !ta && tb) {
        /* one row against a weight matrix (batch-1 decode): a gemv streams
         * the weights once, where sgemm would first copy them into panels */
#ifdef RLHF_OPENMP
        int nt = g_threads;
        if (nt > 1 && (double)N * K >= 1.0e5 && !omp_in_parallel()) {
#pragma omp parallel num_threads(nt)
            {
                int t = omp_get_thread_num(), n = omp_get_num_threads();
                int chunk = ((N + n - 1) / n + 15) / 16 * 16;
                int lo = t * chunk, hi = lo + chunk > N ? N : lo + chunk;
                if (lo < hi)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, K, alpha, B + (size_t)lo * ldb, ldb, A, 1, beta,
                                C + lo, 1);
            }
            return;
        }
#endif
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, alpha, B, ldb, A, 1, beta, C, 1);
        return;
    }
#ifdef RLHF_OPENMP
    int nt = g_threads;
    double work = (double)M * N * K;
    if (nt > 1 && work >= 2.0e5 && !omp_in_parallel()) {
        int split_m = M >= N;
        int dim = split_m ? M : N;
        int align = split_m ? 4 : 16;
        if (dim >= 2 * align) {
#pragma omp parallel num_threads(nt)
            {
                int t = omp_get_thread_num(), n = omp_get_num_threads();
                int chunk = ((dim + n - 1) / n + align - 1) / align * align;
                int lo = t * chunk, hi = lo + chunk > dim ? dim : lo + chunk;
                if (lo < hi) {
                    if (split_m) {
                        const float *a = ta ? A + lo : A + (size_t)lo * lda;
                        cblas_sgemm(CblasRowMajor, TA, TB, hi - lo, N, K, alpha, a, lda, B, ldb, beta,
                                    C + (size_t)lo * ldc, ldc);
                    } else {
                        const float *b = tb ? B + (size_t)lo * ldb : B + lo;
                        cblas_sgemm(CblasRowMajor, TA, TB, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
                    }
                }
            }
            return;
        }
    }
#endif
    cblas_sgemm(CblasRowMajor, TA, TB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- matmul ---- */

void matmul_forward(float *out, const float *inp, const float *weight, int N, int C, int OC, int accumulate) {
    gemm(0, 1, N, OC, C, 1.0f, inp, C, weight, C, accumulate ? 1.0f : 0.0f, out, OC);
}

void matmul_forward_naive(float *out, const float *inp, const float *weight, int N, int C, int OC, int accumulate) {
    for (int i = 0; i < N; i++) {
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int c = 0; c < C; c++) s += (double)inp[(size_t)i * C + c] * weight[(size_t)o * C + c];
            float *dst = &out[(size_t)i * OC + o];
            *dst = accumulate ? *dst + (float)s : (float)s;
        }
    }
}

void matmul_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, int N,
                     int C, int OC) {
    if (dinp) gemm(0, 0, N, C, OC, 1.0f, dout, OC, weight, C, 1.0f, dinp, C);
    if (dweight) gemm(1, 0, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dweight, C);
}

void matmul_backward_naive(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight, int N,
                           int C, int OC) {
    if (dinp) {
        for (int i = 0; i < N; i++)
            for (int c = 0; c < C; c++) {
                double s = 0.0;
                for (int o = 0; o < OC; o++) s += (double)dout[(size_t)i * OC + o] * weight[(size_t)o * C + c];
                dinp[(size_t)i * C + c] += (float)s;
            }
    }
    if (dweight) {
        for (int o = 0; o < OC; o++)
            for (int c = 0; c < C; c++) {
                double s = 0.0;
                for (int i = 0; i < N; i++) s += (double)dout[(size_t)i * OC + o] * inp[(size_t)i * C + c];
                dweight[(size_t)o * C + c] += (float)s;
            }
    }
}

/* ---- embedding ---- */

void embedding_forward(float *out, const int *tokens, const float *emb, int N, int C) {
    OMP_FOR
    for (int i = 0; i < N; i++) memcpy(out + (size_t)i * C, emb + (size_t)tokens[i] * C, sizeof(float) * (size_t)C);
}

void embedding_backward(float *demb, const float *dout, const int *tokens, int N, int C) {
    /* rows may repeat a token: parallelise over channels, not rows */
    for (int i = 0; i < N; i++) {
        float *d = demb + (size_t)tokens[i] * C;
        const float *g = dout + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}

/* ---- rmsnorm ---- */

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C, float eps) {
    OMP_FOR
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        float ss = 0.0f;
        SIMD_SUM(ss)
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
        rstd[i] = r;
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp, const float *weight,
                      const float *rstd, int N, int C) {
    /* out = xhat * w, xhat = x * r: dx = r * (dxhat - xhat * mean(dxhat * xhat)) */
    OMP_FOR
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *g = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float r = rstd[i];
        float dot = 0.0f;
        SIMD_SUM(dot)
        for (int c = 0; c < C; c++) dot += g[c] * weight[c] * x[c] * r;
        dot /= (float)C;
        for (int c = 0; c < C; c++) {
            float xhat = x[c] * r;
            dx[c] += r * (g[c] * weight[c] - xhat * dot);
        }
    }
    /* dweight: reduce over rows (serial over rows, vector over channels) */
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C, *g = dout + (size_t)i * C;
        float r = rstd[i];
        for (int c = 0; c < C; c++) dweight[c] += g[c] * x[c] * r;
    }
}

/* ---- rotary ---- */

void rope_table(float *cosv, float *sinv, int T, int HS, float theta) {
    int half = HS / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            double inv = pow((double)theta, -2.0 * i / (double)HS);
            double a = (double)t * inv;
            cosv[(size_t)t * half + i] = (float)cos(a);
            sinv[(size_t)t * half + i] = (float)sin(a);
        }
}

void rope_forward(float *x, const float *cosv, const float *sinv, const int *pos, int N, int nh, int HS) {
    int half = HS / 2;
    OMP_FOR
    for (int i = 0; i < N; i++) {
        const float *cr = cosv + (size_t)pos[i] * half, *sr = sinv + (size_t)pos[i] * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + ((size_t)i * nh + h) * HS;
            for (int j = 0; j < half; j++) {
                float a = v[j], b = v[j + half];
                v[j] = a * cr[j] - b * sr[j];
                v[j + half] = b * cr[j] + a * sr[j];
            }
        }
    }
}

void rope_backward(float *dx, const float *cosv, const float *sinv, const int *pos, int N, int nh, int HS) {
    int half = HS / 2;
    OMP_FOR
    for (int i = 0; i < N; i++) {
        const float *cr = cosv + (size_t)pos[i] * half, *sr = sinv + (size_t)pos[i] * half;
        for (int h = 0; h < nh; h++) {
            float *v = dx + ((size_t)i * nh + h) * HS;
            for (int j = 0; j < half; j++) {
                float a = v[j], b = v[j + half];
                v[j] = a * cr[j] + b * sr[j];
                v[j + half] = b * cr[j] - a * sr[j];
            }
        }
    }
}

/* ---- swiglu ---- */

void swiglu_forward(float *out, const float *h1, const float *h3, size_t N) {
    OMP_FOR_SIMD
    for (size_t i = 0; i < N; i++) {
        float a = h1[i];
        out[i] = a / (1.0f + vexpf(-a)) * h3[i];
    }
}

void swiglu_backward(float *dh1, float *dh3, const float *dout, const float *h1, const float *h3, size_t N) {
    OMP_FOR_SIMD
    for (size_t i = 0; i < N; i++) {
        float a = h1[i];
        float s = 1.0f / (1.0f + vexpf(-a));
        float silu = a * s;
        dh1[i] += dout[i] * h3[i] * s * (1.0f + a * (1.0f - s));
        dh3[i] += dout[i] * silu;
    }
}

/* ---- attention ---- */

/* Row-wise causal softmax of scores (T,T) in place: row t keeps 0..t. */
static void causal_softmax_rows(float *s, int T) {
    for (int t = 0; t < T; t++) {
        float *row = s + (size_t)t * T;
        float mx = row[0];
        SIMD_MAX(mx)
        for (int j = 1; j <= t; j++) mx = row[j] > mx ? row[j] : mx;
        float sum = 0.0f;
        SIMD_SUM(sum)
        for (int j = 0; j <= t; j++) {
            float e = vexpf(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int j = 0; j <= t; j++) row[j] *= inv;
        for (int j = t + 1; j < T; j++) row[j] = 0.0f;
    }
}

void attention_forward(float *out, float *att, const float *q, const float *k, const float *v, int B, int T, int NH,
                       int KVH, int HS) {
    int QC = NH * HS, KC = KVH * HS, rep = NH / KVH;
    float scale = 1.0f / sqrtf((float)HS);
    if (g_threads == 0) kernels_set_threads(0);
#ifdef RLHF_OPENMP
#pragma omp parallel for collapse(2) schedule(dynamic)
#endif
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int g = h / rep;
            const float *qb = q + (size_t)b * T * QC + (size_t)h * HS;
            const float *kb = k + (size_t)b * T * KC + (size_t)g * HS;
            const float *vb = v + (size_t)b * T * KC + (size_t)g * HS;
            float *a = att + ((size_t)b * NH + h) * T * T;
            float *ob = out + (size_t)b * T * QC + (size_t)h * HS;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, qb, QC, kb, KC, 0.0f, a, T);
            causal_softmax_rows(a, T);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, a, T, vb, KC, 0.0f, ob, QC);
        }
}

void attention_forward_naive(float *out, float *att, const float *q, const float *k, const float *v, int B, int T,
                             int NH, int KVH, int HS) {
    int QC = NH * HS, KC = KVH * HS, rep = NH / KVH;
    float scale = 1.0f / sqrtf((float)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int g = h / rep;
            float *a = att + ((size_t)b * NH + h) * T * T;
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * QC + (size_t)h * HS;
                float *row = a + (size_t)t * T;
                for (int j = 0; j < T; j++) {
                    const float *kj = k + ((size_t)b * T + j) * KC + (size_t)g * HS;
                    double s = 0.0;
                    for (int d = 0; d < HS; d++) s += (double)qt[d] * kj[d];
                    row[j] = (float)s * scale;
                }
            }
            causal_softmax_rows(a, T);
            for (int t = 0; t < T; t++) {
                float *ot = out + ((size_t)b * T + t) * QC + (size_t)h * HS;
                for (int d = 0; d < HS; d++) {
                    double s = 0.0;
                    for (int j = 0; j <= t; j++)
                        s += (double)a[(size_t)t * T + j] * v[((size_t)b * T + j) * KC + (size_t)g * HS + d];
                    ot[d] = (float)s;
                }
            }
        }
}

void attention_backward(float *dq, float *dk, float *dv, float *scratch, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int NH, int KVH, int HS) {
    int QC = NH * HS, KC = KVH * HS, rep = NH / KVH;
    float scale = 1.0f / sqrtf((float)HS);
    if (g_threads == 0) kernels_set_threads(0);
#ifdef RLHF_OPENMP
#pragma omp parallel for collapse(2) schedule(dynamic)
#endif
    for (int b = 0; b < B; b++)
        for (int g = 0; g < KVH; g++)
            for (int h = g * rep; h < (g + 1) * rep; h++) {
                const float *qb = q + (size_t)b * T * QC + (size_t)h * HS;
                const float *kb = k + (size_t)b * T * KC + (size_t)g * HS;
                const float *vb = v + (size_t)b * T * KC + (size_t)g * HS;
                const float *dob = dout + (size_t)b * T * QC + (size_t)h * HS;
                float *dqb = dq + (size_t)b * T * QC + (size_t)h * HS;
                float *dkb = dk + (size_t)b * T * KC + (size_t)g * HS;
                float *dvb = dv + (size_t)b * T * KC + (size_t)g * HS;
                const float *p = att + ((size_t)b * NH + h) * T * T;
                float *dp = scratch + ((size_t)b * NH + h) * T * T;
                /* dP = dO V^T ; dV += P^T dO */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dob, QC, vb, KC, 0.0f, dp, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, p, T, dob, QC, 1.0f, dvb, KC);
                /* dS = P * (dP - rowsum(P * dP)) * scale, causal */
                for (int t = 0; t < T; t++) {
                    const float *pr = p + (size_t)t * T;
                    float *dr = dp + (size_t)t * T;
                    float dot = 0.0f;
                    SIMD_SUM(dot)
                    for (int j = 0; j <= t; j++) dot += pr[j] * dr[j];
                    for (int j = 0; j <= t; j++) dr[j] = pr[j] * (dr[j] - dot) * scale;
                    for (int j = t + 1; j < T; j++) dr[j] = 0.0f;
                }
                /* dQ += dS K ; dK += dS^T Q */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, dp, T, kb, KC, 1.0f, dqb, QC);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, dp, T, qb, QC, 1.0f, dkb, KC);
            }
}

void attention_backward_naive(float *dq, float *dk, float *dv, const float *dout, const float *att, const float *q,
                              const float *k, const float *v, int B, int T, int NH, int KVH, int HS) {
    int QC = NH * HS, KC = KVH * HS, rep = NH / KVH;
    float scale = 1.0f / sqrtf((float)HS);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            int g = h / rep;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            for (int t = 0; t < T; t++) {
                const float *dot_ = dout + ((size_t)b * T + t) * QC + (size_t)h * HS;
                const float *qt = q + ((size_t)b * T + t) * QC + (size_t)h * HS;
                float *dqt = dq + ((size_t)b * T + t) * QC + (size_t)h * HS;
                double rs = 0.0;
                double dpr[4096];
                for (int j = 0; j <= t; j++) {
                    const float *vj = v + ((size_t)b * T + j) * KC + (size_t)g * HS;
                    double s = 0.0;
                    for (int d = 0; d < HS; d++) s += (double)dot_[d] * vj[d];
                    dpr[j] = s;
                    rs += s * p[(size_t)t * T + j];
                }
                for (int j = 0; j <= t; j++) {
                    double pj = p[(size_t)t * T + j];
                    double ds = pj * (dpr[j] - rs) * scale;
                    float *dvj = dv + ((size_t)b * T + j) * KC + (size_t)g * HS;
                    float *dkj = dk + ((size_t)b * T + j) * KC + (size_t)g * HS;
                    const float *kj = k + ((size_t)b * T + j) * KC + (size_t)g * HS;
                    for (int d = 0; d < HS; d++) {
                        dvj[d] += (float)(pj * dot_[d]);
                        dqt[d] += (float)(ds * kj[d]);
                        dkj[d] += (float)(ds * qt[d]);
                    }
                }
            }
        }
}

/* ---- log-probs and entropy ---- */

void logprob_forward(float *logprobs, float *entropy, float *lse, const float *logits, const int *targets, int N, int V,
                     float inv_temp) {
    OMP_FOR
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        float mx = z[0] * inv_temp;
        SIMD_MAX(mx)
        for (int j = 1; j < V; j++) mx = z[j] * inv_temp > mx ? z[j] * inv_temp : mx;
        float sum = 0.0f, wsum = 0.0f;
        _Pragma("omp simd reduction(+ : sum, wsum)") for (int j = 0; j < V; j++) {
            float zz = z[j] * inv_temp - mx;
            float e = vexpf(zz);
            sum += e;
            wsum += e * zz;
        }
        float l = mx + logf(sum);
        lse[i] = l;
        int tgt = targets[i];
        if (tgt < 0) {
            logprobs[i] = 0.0f;
            entropy[i] = 0.0f;
            continue;
        }
        logprobs[i] = z[tgt] * inv_temp - l;
        /* H = log(sum) - E[zz] with zz = z*inv_temp - mx */
        entropy[i] = logf(sum) - wsum / sum;
    }
}

void logprob_backward(float *dlogits, const float *dlogprobs, const float *dentropy, const float *logits,
                      const float *lse, const float *entropy, const int *targets, int N, int V, float inv_temp) {
    OMP_FOR
    for (int i = 0; i < N; i++) {
        int tgt = targets[i];
        if (tgt < 0) continue;
        float dl = dlogprobs ? dlogprobs[i] : 0.0f;
        float de = dentropy ? dentropy[i] : 0.0f;
        if (dl == 0.0f && de == 0.0f) continue;
        const float *z = logits + (size_t)i * V;
        float *dz = dlogits + (size_t)i * V;
        float l = lse[i], H = entropy[i];
        _Pragma("omp simd") for (int j = 0; j < V; j++) {
            float logp = z[j] * inv_temp - l;
            float p = vexpf(logp);
            /* d logp_t/dz_j = delta - p_j ; dH/dz_j = -p_j (logp_j + H) */
            float g = -dl * p - de * p * (logp + H);
            dz[j] += g * inv_temp;
        }
        dz[tgt] += dl * inv_temp;
    }
}
