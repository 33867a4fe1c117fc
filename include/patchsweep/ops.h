/* The transformer's operations, each forward next to its backward (llm.c style).
 * Shapes are in the comments: N rows, C input columns, OC output columns.
 * Every backward ACCUMULATES (+=) into its gradient outputs; a NULL gradient is skipped. */
#ifndef PATCHSWEEP_OPS_H
#define PATCHSWEEP_OPS_H

#include "patchsweep/model.h"

/* Matrix products (matmul.c), on our own kernels: every output element is one fma chain over
 * the inputs in order, so a row's bits depend on nothing but that row and the weights.
 * The forward reads a weight matrix w[OC,C] packed once at load (pack_weights: panels of PANEL
 * output columns, k-major, zero past OC, packed_floats(OC, C) floats); the backward reads w as is. */
void pack_weights(float *packed, const float *w, int OC, int C);
/* The same for a matrix held in 16 bits (bfloat16 or float16). */
void pack_weights16(uint16_t *packed, const uint16_t *w, int OC, int C);
/* out[N,OC] = inp[N,C] w[OC,C]^T + bias[OC] (bias may be NULL), w given packed */
void matmul_forward(float *out, const float *inp, const float *w_packed, const float *bias, int N, int C, int OC);
/* The same with row strides: row n of inp at inp + n * ld_inp, of out at out + n * ld_out. */
void matmul_packed(float *out, ptrdiff_t ld_out, const float *inp, ptrdiff_t ld_inp, const float *w_packed,
                   const float *bias, int N, int C, int OC);
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int N, int C, int OC);
/* The same on weights held in any WeightType (a model's: model_packed, model_matrix), widened
 * exactly inside the kernel: the bits of the float32 product on the widened matrix. */
void matmul_forward_ref(float *out, const float *inp, WeightRef w_packed, const float *bias, int N, int C, int OC);
void matmul_backward_ref(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, WeightRef w,
                         int N, int C, int OC);
/* dst[i] = element i of w, widened to float32, for i < n. */
void weights_widen(float *dst, WeightRef w, size_t n);

/* LayerNorm (biased variance) or RMSNorm over rows of C; mean is unused (NULL) for RMSNorm. */
void norm_forward(NormKind kind, float *out, float *mean, float *rstd, const float *inp, const float *w,
                  const float *b, int N, int C, float eps);
void norm_backward(NormKind kind, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                   const float *w, const float *mean, const float *rstd, int N, int C);

/* Elementwise activation of an un-gated MLP: GELU (tanh or erf form) or SiLU. */
void act_forward(ActKind kind, float *out, const float *inp, int N);
void act_backward(ActKind kind, float *dinp, const float *dout, const float *inp, int N);
/* Gated MLP (SwiGLU): out = silu(gate) * up. */
void swiglu_forward(float *out, const float *gate, const float *up, int N);
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int N);

/* out = a + b over N floats. */
void residual_forward(float *out, const float *a, const float *b, int N);
void residual_backward(float *da, float *db, const float *dout, int N);

/* Rotary embedding, rotate-half layout, on the first rot_dims dims of every head of width
 * d_head (the rest are copied). Rows are n_seq sequences of n_rows rows at positions
 * pos0, pos0+1, ...; inv_freq has rot_dims/2 entries. */
void rope_forward(float *out, const float *inp, int n_seq, int n_rows, int pos0, int n_heads, int d_head,
                  int rot_dims, const double *inv_freq);
void rope_backward(float *dinp, const float *dout, int n_seq, int n_rows, int pos0, int n_heads, int d_head,
                   int rot_dims, const double *inv_freq);

/* Causal multi-head attention with grouped key/value heads, for one sequence.
 * Query row i sits at position q_pos0 + i; key/value row j of k, v at position kv_pos0 + j;
 * keys at positions < kv_pos0 are read from k_prefix/v_prefix (rows 0..kv_pos0-1), which is how
 * a recomputed suffix reuses the cached prefix. Query head h reads key/value head
 * h / (n_head / n_kv_head). */
typedef struct {
    int n_head, n_kv_head, d_head;
    int n_q, q_pos0;
    int n_kv, kv_pos0;
} AttnShape;
static inline int attn_n_keys(const AttnShape *s) { return s->kv_pos0 + s->n_kv; }
/* z [n_q, n_head*d_head]; pattern [n_head, n_q, n_keys] (zero above the diagonal), or NULL when
 * no one reads it (computed row by row in scratch; z has the same bits either way). */
void attention_forward(float *z, float *pattern, const float *q, const float *k, const float *v,
                       const float *k_prefix, const float *v_prefix, const AttnShape *s);
/* B sequences of the same shape, one after another in z, pattern, q, k and v; sequence b's
 * prefixes are k_prefix[b], v_prefix[b]. Split over the rank's threads by (sequence, key/value
 * head): each head's rows are computed whole by one thread, as without threads. */
void attention_forward_batch(float *z, float *pattern, const float *q, const float *k, const float *v,
                             const float *const *k_prefix, const float *const *v_prefix, int B, const AttnShape *s);
/* Full sequences only (q_pos0 = kv_pos0 = 0, n_q = n_kv). dpattern, if not NULL, receives
 * (=, not +=) dL/dpattern, the G of the QK fix. */
void attention_backward(float *dq, float *dk, float *dv, float *dpattern, const float *dz, const float *q,
                        const float *k, const float *v, const float *pattern, const AttnShape *s);

/* resid[T,d] = wte[token] + wpe[t] (if wpe.p) + noise[t] (if noise); rows widened as they are read */
void embedding_forward(float *out, const int *tokens, int T, WeightRef wte, WeightRef wpe, const float *noise, int d);
void embedding_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int T, int d);

#endif
