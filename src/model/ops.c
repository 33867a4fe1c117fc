/* The operations other than the matrix products (matmul.c). Plain loops in a fixed order; the
 * exponentials and their kin go through the kernels' deterministic array functions, so every
 * value has the same bits on every CPU (kernels.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"

/* ---- LayerNorm / RMSNorm -------------------------------------------------------------------- */

typedef struct {
    NormKind kind;
    float *out, *mean, *rstd;
    const float *inp, *w, *b;
    int C;
    float eps;
} NormJob;

static void norm_rows(void *ctx, long n0, long n1) {
    const NormJob *j = ctx;
    int C = j->C;
    for (long n = n0; n < n1; n++) {
        const float *x = j->inp + (size_t)n * C, *w = j->w, *b = j->b;
        float *y = j->out + (size_t)n * C;
        double m = 0.0, var = 0.0; /* double sums: the row statistics set every later rounding */
        if (j->kind == NORM_LAYER) {
            for (int i = 0; i < C; i++) m += x[i];
            m /= C;
        }
        for (int i = 0; i < C; i++) var += (x[i] - m) * (x[i] - m);
        float s = (float)(1.0 / sqrt(var / C + j->eps));
        for (int i = 0; i < C; i++) y[i] = (float)((x[i] - m) * s) * w[i] + (b ? b[i] : 0.0f);
        if (j->mean) j->mean[n] = (float)m;
        j->rstd[n] = s;
    }
}

/* Rows below this many floats run on one thread: waking the others costs more. */
#define THREADED_FLOATS (1L << 15)

/* Rows are independent: split over the rank's threads by rows. */
void norm_forward(NormKind kind, float *out, float *mean, float *rstd, const float *inp, const float *w,
                  const float *b, int N, int C, float eps) {
    NormJob job = {kind, out, mean, rstd, inp, w, b, C, eps};
    threads_for(N, 1, C > 0 ? THREADED_FLOATS / C + 1 : N + 1, norm_rows, &job);
}

void norm_backward(NormKind kind, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                   const float *w, const float *mean, const float *rstd, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *dy = dout + (size_t)n * C;
        float m = kind == NORM_LAYER ? mean[n] : 0.0f, s = rstd[n];
        /* With xhat = (x - m) s and dxhat = dy w:
         *   LayerNorm: dx = s (dxhat - mean(dxhat) - xhat mean(dxhat xhat))
         *   RMSNorm:   dx = s (dxhat - xhat mean(dxhat xhat)) */
        double sum_dxhat = 0.0, sum_dxhat_xhat = 0.0;
        for (int i = 0; i < C; i++) {
            float xhat = (x[i] - m) * s, dxhat = dy[i] * w[i];
            sum_dxhat += dxhat;
            sum_dxhat_xhat += dxhat * xhat;
        }
        float mean_dxhat = kind == NORM_LAYER ? (float)(sum_dxhat / C) : 0.0f;
        float mean_dxhat_xhat = (float)(sum_dxhat_xhat / C);
        for (int i = 0; i < C; i++) {
            float xhat = (x[i] - m) * s, dxhat = dy[i] * w[i];
            if (dinp) dinp[(size_t)n * C + i] += s * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat);
            if (dw) dw[i] += dy[i] * xhat;
            if (db) db[i] += dy[i];
        }
    }
}

/* ---- activations ------------------------------------------------------------------------------
 * Elementwise, in chunks: first the argument of the transcendental function for a chunk, then
 * the function over the whole chunk (one vectorised call), then the rest. */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */
#define INV_SQRT_2PI 0.3989422804014327f
enum { CHUNK = 256 };

/* out[i] = exp(-x[i]): the sigmoid's ingredient, 1 / (1 + exp(-x)). */
static void exp_negated(const Kernels *k, float *out, const float *x, int n) {
    for (int i = 0; i < n; i++) out[i] = -x[i];
    k->exp(out, out, n);
}

static void act_chunks(ActKind kind, float *out, const float *inp, int N) {
    const Kernels *k = kernels();
    float f[CHUNK];
    for (int i0 = 0; i0 < N; i0 += CHUNK) {
        int n = N - i0 < CHUNK ? N - i0 : CHUNK;
        const float *x = inp + i0;
        float *y = out + i0;
        if (kind == ACT_GELU_TANH) { /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
            for (int i = 0; i < n; i++) f[i] = GELU_SCALE * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
            k->tanh(f, f, n);
            for (int i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + f[i]);
        } else if (kind == ACT_GELU_ERF) { /* 0.5 x (1 + erf(x / sqrt 2)) */
            for (int i = 0; i < n; i++) f[i] = x[i] * (float)M_SQRT1_2;
            k->erf(f, f, n);
            for (int i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + f[i]);
        } else { /* silu: x / (1 + exp(-x)) */
            exp_negated(k, f, x, n);
            for (int i = 0; i < n; i++) y[i] = x[i] / (1.0f + f[i]);
        }
    }
}

typedef struct {
    ActKind kind;
    float *out;
    const float *inp;
} ActJob;

static void act_range(void *ctx, long lo, long hi) {
    const ActJob *j = ctx;
    act_chunks(j->kind, j->out + lo, j->inp + lo, (int)(hi - lo));
}

/* Split over the rank's threads at chunk boundaries: every chunk is the same call as on one thread. */
void act_forward(ActKind kind, float *out, const float *inp, int N) {
    ActJob job = {kind, out, inp};
    threads_for(N, CHUNK, THREADED_FLOATS, act_range, &job);
}

void act_backward(ActKind kind, float *dinp, const float *dout, const float *inp, int N) {
    const Kernels *k = kernels();
    float f[CHUNK], g[CHUNK];
    for (int i0 = 0; i0 < N; i0 += CHUNK) {
        int n = N - i0 < CHUNK ? N - i0 : CHUNK;
        const float *x = inp + i0, *dy = dout + i0;
        float *dx = dinp + i0;
        if (kind == ACT_GELU_TANH) {
            for (int i = 0; i < n; i++) f[i] = GELU_SCALE * (x[i] + 0.044715f * x[i] * x[i] * x[i]);
            k->tanh(f, f, n);
            for (int i = 0; i < n; i++) {
                float du = GELU_SCALE * (1.0f + 3.0f * 0.044715f * x[i] * x[i]);
                float grad = 0.5f * (1.0f + f[i]) + 0.5f * x[i] * (1.0f - f[i] * f[i]) * du;
                dx[i] += grad * dy[i];
            }
        } else if (kind == ACT_GELU_ERF) { /* 0.5 (1 + erf(x / sqrt 2)) + x phi(x) */
            for (int i = 0; i < n; i++) f[i] = x[i] * (float)M_SQRT1_2, g[i] = -0.5f * x[i] * x[i];
            k->erf(f, f, n);
            k->exp(g, g, n);
            for (int i = 0; i < n; i++) dx[i] += (0.5f * (1.0f + f[i]) + x[i] * g[i] * INV_SQRT_2PI) * dy[i];
        } else { /* silu' = sig (1 + x (1 - sig)) */
            exp_negated(k, f, x, n);
            for (int i = 0; i < n; i++) {
                float sig = 1.0f / (1.0f + f[i]);
                dx[i] += sig * (1.0f + x[i] * (1.0f - sig)) * dy[i];
            }
        }
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, int N) {
    const Kernels *k = kernels();
    float f[CHUNK];
    for (int i0 = 0; i0 < N; i0 += CHUNK) {
        int n = N - i0 < CHUNK ? N - i0 : CHUNK;
        exp_negated(k, f, gate + i0, n);
        for (int i = 0; i < n; i++) out[i0 + i] = gate[i0 + i] / (1.0f + f[i]) * up[i0 + i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int N) {
    const Kernels *k = kernels();
    float f[CHUNK];
    for (int i0 = 0; i0 < N; i0 += CHUNK) {
        int n = N - i0 < CHUNK ? N - i0 : CHUNK;
        exp_negated(k, f, gate + i0, n);
        for (int i = 0; i < n; i++) {
            size_t j = (size_t)i0 + i;
            float sig = 1.0f / (1.0f + f[i]);
            if (dgate) dgate[j] += dout[j] * up[j] * sig * (1.0f + gate[j] * (1.0f - sig));
            if (dup) dup[j] += dout[j] * gate[j] * sig;
        }
    }
}

/* ---- residual ------------------------------------------------------------------------------------ */

void residual_forward(float *out, const float *a, const float *b, int N) {
    for (int i = 0; i < N; i++) out[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dout, int N) {
    for (int i = 0; i < N; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

/* ---- rotary embedding ------------------------------------------------------------------------------ */

/* sign = +1 rotates by +angle (forward), -1 by -angle (the transpose, used by backward). */
static void rope_rotate(float *out, const float *inp, int accumulate, float sign, int n_seq, int n_rows, int pos0,
                        int n_heads, int d_head, int rot_dims, const double *inv_freq) {
    int half = rot_dims / 2;
    float cos_t[512], sin_t[512]; /* half <= 512: heads wider than 1024 dims do not exist */
    for (int r = 0; r < n_rows; r++) {
        for (int j = 0; j < half; j++) {
            double angle = (double)(pos0 + r) * inv_freq[j];
            cos_t[j] = (float)det_cos(angle);
            sin_t[j] = sign * (float)det_sin(angle);
        }
        for (int sq = 0; sq < n_seq; sq++) {
            size_t row = ((size_t)sq * n_rows + r) * n_heads * d_head;
            for (int h = 0; h < n_heads; h++) {
                const float *x = inp + row + (size_t)h * d_head;
                float *y = out + row + (size_t)h * d_head;
                for (int j = 0; j < half; j++) {
                    float x1 = x[j], x2 = x[j + half];
                    float y1 = x1 * cos_t[j] - x2 * sin_t[j], y2 = x2 * cos_t[j] + x1 * sin_t[j];
                    if (accumulate) { y[j] += y1; y[j + half] += y2; }
                    else { y[j] = y1; y[j + half] = y2; }
                }
                for (int j = rot_dims; j < d_head; j++) y[j] = accumulate ? y[j] + x[j] : x[j];
            }
        }
    }
}

void rope_forward(float *out, const float *inp, int n_seq, int n_rows, int pos0, int n_heads, int d_head,
                  int rot_dims, const double *inv_freq) {
    rope_rotate(out, inp, 0, 1.0f, n_seq, n_rows, pos0, n_heads, d_head, rot_dims, inv_freq);
}

void rope_backward(float *dinp, const float *dout, int n_seq, int n_rows, int pos0, int n_heads, int d_head,
                   int rot_dims, const double *inv_freq) {
    /* A rotation's transpose is the rotation by the opposite angle. */
    rope_rotate(dinp, dout, 1, -1.0f, n_seq, n_rows, pos0, n_heads, d_head, rot_dims, inv_freq);
}

/* ---- attention ------------------------------------------------------------------------------------------ */

static inline const float *kv_row(const float *rows, const float *prefix, int pos, int pos0, int kv_dim) {
    return pos < pos0 ? prefix + (size_t)pos * kv_dim : rows + (size_t)(pos - pos0) * kv_dim;
}

/* Per key/value head g, both products of attention run on the matmul kernels: the keys packed as
 * the "weights" of scores = q K^T (panel p holds keys 16p.., k-major over the head's dims), and
 * the values transposed the same way for z = A V. So every score and every z element is one fma
 * chain (over the head's dims, over the keys in order), as in every other product, and a query
 * row's bits do not depend on the rows computed with it. A query row computes scores against
 * every key and ignores those after its position; the chain of the values runs over every key
 * too, with weights exactly 0 past the position. scores holds one head's [n_q, n_keys]: the
 * pattern's own rows when it is kept, else scratch. */
static void attention_group(float *z, float *pattern, const float *q, const float *k, const float *v,
                            const float *k_prefix, const float *v_prefix, const AttnShape *s, int g, float *keys,
                            float *values, float *scratch) {
    int dh = s->d_head, group = s->n_head / s->n_kv_head, n_keys = attn_n_keys(s);
    int qd = s->n_head * dh, kvd = s->n_kv_head * dh;
    float scale = 1.0f / sqrtf((float)dh);
    const Kernels *kern = kernels();
    for (int t = 0; t < n_keys; t++) {
        const float *kt = kv_row(k, k_prefix, t, s->kv_pos0, kvd) + (size_t)g * dh;
        const float *vt = kv_row(v, v_prefix, t, s->kv_pos0, kvd) + (size_t)g * dh;
        for (int e = 0; e < dh; e++) {
            keys[((size_t)(t / PANEL) * dh + e) * PANEL + t % PANEL] = kt[e];
            values[((size_t)(e / PANEL) * n_keys + t) * PANEL + e % PANEL] = vt[e];
        }
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        float *scores = pattern ? pattern + (size_t)h * s->n_q * n_keys : scratch; /* [n_q, n_keys] */
        matmul_packed(scores, n_keys, q + (size_t)h * dh, qd, keys, NULL, s->n_q, dh, n_keys);
        for (int i = 0; i < s->n_q; i++) {
            int pos = s->q_pos0 + i; /* this query sees keys 0..pos */
            float *row = scores + (size_t)i * n_keys, maxv = -INFINITY;
            for (int t = 0; t <= pos; t++) {
                row[t] *= scale;
                if (row[t] > maxv) maxv = row[t];
            }
            for (int t = 0; t <= pos; t++) row[t] -= maxv;
            kern->exp(row, row, pos + 1);
            float sum = 0.0f;
            for (int t = 0; t <= pos; t++) sum += row[t];
            for (int t = 0; t <= pos; t++) row[t] /= sum;
            for (int t = pos + 1; t < n_keys; t++) row[t] = 0.0f;
        }
        matmul_packed(z + (size_t)h * dh, qd, scores, n_keys, values, NULL, s->n_q, n_keys, dh);
    }
}

typedef struct {
    float *z, *pattern;
    const float *q, *k, *v;
    const float *const *k_prefix, *const *v_prefix;
    int B;
    const AttnShape *s;
} AttnJob;

/* Items are (sequence, key/value head) pairs; task i of n takes a contiguous share of them. */
static void attention_task(void *ctx, int index, int count) {
    const AttnJob *j = ctx;
    const AttnShape *s = j->s;
    int items = j->B * s->n_kv_head, i0 = (int)((long)items * index / count), i1 = (int)((long)items * (index + 1) / count);
    if (i1 <= i0) return;
    int n_keys = attn_n_keys(s), qd = s->n_head * s->d_head, kvd = s->n_kv_head * s->d_head;
    float *keys = alloc_floats(packed_floats(n_keys, s->d_head)), *values = alloc_floats(packed_floats(s->d_head, n_keys));
    float *scratch = j->pattern ? NULL : alloc_floats((size_t)s->n_q * n_keys);
    for (int i = i0; i < i1; i++) {
        int b = i / s->n_kv_head, g = i % s->n_kv_head;
        attention_group(j->z + (size_t)b * s->n_q * qd,
                        j->pattern ? j->pattern + (size_t)b * s->n_head * s->n_q * n_keys : NULL,
                        j->q + (size_t)b * s->n_q * qd, j->k + (size_t)b * s->n_kv * kvd, j->v + (size_t)b * s->n_kv * kvd,
                        s->kv_pos0 ? j->k_prefix[b] : NULL, s->kv_pos0 ? j->v_prefix[b] : NULL, s, g, keys, values,
                        scratch);
    }
    free(keys), free(values), free(scratch);
}

void attention_forward_batch(float *z, float *pattern, const float *q, const float *k, const float *v,
                             const float *const *k_prefix, const float *const *v_prefix, int B, const AttnShape *s) {
    AttnJob job = {z, pattern, q, k, v, k_prefix, v_prefix, B, s};
    if (threads_count() > 1 && B * s->n_kv_head > 1) threads_run(attention_task, &job);
    else attention_task(&job, 0, 1);
}

void attention_forward(float *z, float *pattern, const float *q, const float *k, const float *v,
                       const float *k_prefix, const float *v_prefix, const AttnShape *s) {
    attention_forward_batch(z, pattern, q, k, v, &k_prefix, &v_prefix, 1, s);
}

void attention_backward(float *dq, float *dk, float *dv, float *dpattern, const float *dz, const float *q,
                        const float *k, const float *v, const float *pattern, const AttnShape *s) {
    int H = s->n_head, dh = s->d_head, group = s->n_head / s->n_kv_head, T = s->n_q;
    int qd = H * dh, kvd = s->n_kv_head * dh;
    float scale = 1.0f / sqrtf((float)dh);
    float dpat[T > 0 ? T : 1]; /* one row of dL/dpattern */
    for (int h = 0; h < H; h++) {
        int g = h / group;
        for (int i = 0; i < T; i++) {
            const float *row = pattern + ((size_t)h * T + i) * T;
            const float *dzi = dz + (size_t)i * qd + (size_t)h * dh;
            /* z_i = sum_t A_it v_t: dA_it = dz_i . v_t and dv_t += A_it dz_i */
            float weighted = 0.0f; /* sum_t A_it dA_it */
            for (int t = 0; t <= i; t++) {
                const float *vt = v + (size_t)t * kvd + (size_t)g * dh;
                float dot = 0.0f;
                for (int e = 0; e < dh; e++) dot += dzi[e] * vt[e];
                dpat[t] = dot;
                weighted += row[t] * dot;
                if (dv) {
                    float *dvt = dv + (size_t)t * kvd + (size_t)g * dh;
                    for (int e = 0; e < dh; e++) dvt[e] += row[t] * dzi[e];
                }
            }
            if (dpattern) {
                float *gout = dpattern + ((size_t)h * T + i) * T;
                for (int t = 0; t < T; t++) gout[t] = t <= i ? dpat[t] : 0.0f;
            }
            /* softmax: dscore_it = A_it (dA_it - sum_t' A_it' dA_it'); score = q.k * scale */
            const float *qi = q + (size_t)i * qd + (size_t)h * dh;
            float *dqi = dq ? dq + (size_t)i * qd + (size_t)h * dh : NULL;
            for (int t = 0; t <= i; t++) {
                float dscore = row[t] * (dpat[t] - weighted) * scale;
                const float *kt = k + (size_t)t * kvd + (size_t)g * dh;
                if (dqi)
                    for (int e = 0; e < dh; e++) dqi[e] += dscore * kt[e];
                if (dk) {
                    float *dkt = dk + (size_t)t * kvd + (size_t)g * dh;
                    for (int e = 0; e < dh; e++) dkt[e] += dscore * qi[e];
                }
            }
        }
    }
}

/* ---- embedding ------------------------------------------------------------------------------------------------- */

void embedding_forward(float *out, const int *tokens, int T, WeightRef wte, WeightRef wpe, const float *noise, int d) {
    for (int t = 0; t < T; t++) {
        float *x = out + (size_t)t * d;
        weights_widen(x, weight_at(wte, (size_t)tokens[t] * d), (size_t)d);
        if (wpe.p)
            for (int i = 0; i < d; i++) x[i] += weight_value(wpe, (size_t)t * d + i);
        if (noise)
            for (int i = 0; i < d; i++) x[i] += noise[(size_t)t * d + i];
    }
}

void embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int T, int d) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < d; i++) {
            if (dwte) dwte[(size_t)tokens[t] * d + i] += dout[(size_t)t * d + i];
            if (dwpe) dwpe[(size_t)t * d + i] += dout[(size_t)t * d + i];
        }
}
