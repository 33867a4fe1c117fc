/* Encoding text into ids: Hugging Face's pipeline (tokenizers/src/tokenizer/mod.rs
 * encode_single_sequence and added_vocabulary.rs extract_and_normalize):
 *   1. cut the raw text at added tokens matched before normalization (special tokens, ...);
 *   2. normalize each remaining piece;
 *   3. cut it again at added tokens matched in normalized text;
 *   4. pre-tokenize, and run the model on each pre-token;
 *   5. put the template's special tokens around the result when asked to. */
#include <stdlib.h>
#include "tokenizer_impl.h"

void scratch_free(Scratch *s) {
    free(s->pieces.text.p);
    free(s->pieces.p);
    free(s->next.text.p);
    free(s->next.p);
    free(s->tmp.p);
    free(s->norm[0].p);
    free(s->norm[1].p);
    free(s->normalized.p);
    free(s->matches.p);
    free(s->parts.p);
    free(s->raw_segments.p);
    free(s->segments.p);
    free(s->symbols);
    free(s->heap);
    free(s->cache);
    free(s->cache_keys.p);
    free(s->cache_ids.p);
    if (s->region) onig_region_free(s->region, 1);
    memset(s, 0, sizeof *s);
}

/* ---- added tokens ---------------------------------------------------------------------------- */

static int is_word_char(const Tokenizer *t, const char *s, size_t n, size_t at) {
    const OnigUChar *base = (const OnigUChar *)s;
    return onig_match(t->word_char, base, base + n, base + at, NULL, ONIG_OPTION_NONE) > 0;
}

static size_t char_before(const char *s, size_t at) {
    size_t i = at - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) i--;
    return i;
}

/* single_word: no word character touches the match on either side (the regex crate's \w). */
static int stands_alone(const Tokenizer *t, const char *s, size_t n, size_t start, size_t end) {
    return (start == 0 || !is_word_char(t, s, n, char_before(s, start))) && (end == n || !is_word_char(t, s, n, end));
}

static size_t skip_space_back(const char *s, size_t at, size_t floor) {
    while (at > floor) {
        size_t i = char_before(s, at), j = i;
        uint32_t cp;
        if (!utf8_next(s, at, &j, &cp) || !unicode_is_white_space(cp)) break;
        at = i;
    }
    return at;
}

static size_t skip_space_forward(const char *s, size_t n, size_t at) {
    for (size_t i = at; i < n; at = i) {
        uint32_t cp;
        if (!utf8_next(s, n, &i, &cp) || !unicode_is_white_space(cp)) break;
    }
    return at;
}

/* The longest added token of the wanted kind (normalized or not) that starts at s[at]. */
static int longest_at(const Tokenizer *t, const char *s, size_t n, size_t at, int normalized) {
    int best = -1;
    for (int i = 0; i < t->n_added; i++) {
        const AddedToken *a = &t->added[i];
        if (a->normalized != normalized || a->match_len == 0 || a->match_len > n - at) continue;
        if (best >= 0 && a->match_len <= t->added[best].match_len) continue;
        if (memcmp(s + at, a->match, a->match_len) == 0) best = i;
    }
    return best;
}

/* Cuts s into text and added-token segments (flag: -1 for text, else the token's index),
 * leftmost-longest as Hugging Face's Aho-Corasick automaton finds them. lstrip and rstrip pull
 * the whitespace around a token into it; single_word drops a match inside a word (and, as in
 * Hugging Face, the search goes on after the dropped match). */
static void split_added(const Tokenizer *t, const char *s, size_t n, int normalized, SpanList *out) {
    out->n = 0;
    size_t done = 0, at = 0;
    while (at < n) {
        int k = t->added_starts[normalized][(unsigned char)s[at]] ? longest_at(t, s, n, at, normalized) : -1;
        if (k < 0) {
            at++;
            continue;
        }
        const AddedToken *a = &t->added[k];
        size_t start = at, end = at + a->match_len;
        at = end;
        if (start < done) continue; /* inside whitespace an rstrip already took */
        if (a->single_word && !stands_alone(t, s, n, start, end)) continue;
        if (a->lstrip) start = skip_space_back(s, start, done);
        if (a->rstrip) end = skip_space_forward(s, n, end);
        if (start > done) span_add(out, done, start, -1);
        span_add(out, start, end, k);
        done = end;
    }
    if (done < n) span_add(out, done, n, -1);
}

/* ---- the pipeline ------------------------------------------------------------------------------ */

static int encode_normalized(const Tokenizer *t, const char *s, size_t n, int at_start, Scratch *sc, IntList *out) {
    if (t->any_normalized_added) split_added(t, s, n, 1, &sc->segments);
    else {
        sc->segments.n = 0;
        span_add(&sc->segments, 0, n, -1);
    }
    for (int i = 0; i < sc->segments.n; i++) {
        Span seg = sc->segments.p[i];
        if (seg.flag >= 0) {
            int_add(out, t->added[seg.flag].id);
            continue;
        }
        pre_tokenize(t, s + seg.start, seg.end - seg.start, at_start && seg.start == 0, sc);
        for (int k = 0; k < sc->pieces.n; k++) {
            int rc = model_tokenize(t, sc->pieces.text.p + sc->pieces.p[k].start, sc->pieces.p[k].len, sc, out);
            if (rc) return rc;
        }
    }
    return PS_OK;
}

static int encode_text(const Tokenizer *t, const char *s, size_t n, Scratch *sc, IntList *out) {
    if (t->any_raw_added) split_added(t, s, n, 0, &sc->raw_segments);
    else if (n) span_add(&sc->raw_segments, 0, n, -1);
    for (int i = 0; i < sc->raw_segments.n; i++) {
        Span seg = sc->raw_segments.p[i];
        if (seg.flag >= 0) {
            int_add(out, t->added[seg.flag].id);
            continue;
        }
        sc->normalized.len = 0;
        buf_add(&sc->normalized, "", 0);
        normalize(t, s + seg.start, seg.end - seg.start, &sc->normalized, sc);
        if (sc->normalized.len == 0) continue;
        int rc = encode_normalized(t, sc->normalized.p, sc->normalized.len, seg.start == 0, sc, out);
        if (rc) return rc;
    }
    return PS_OK;
}

int tokenizer_encode(const Tokenizer *t, const char *text, int add_special_tokens, int **ids, int *n) {
    size_t len = strlen(text), valid = utf8_valid_length(text, len);
    if (valid < len)
        return ps_fail(PS_EUSER, "text is not valid UTF-8 (byte %zu is 0x%02x)", valid, (unsigned char)text[valid]);
    if (len > (size_t)1 << 30) return ps_fail(PS_EUSER, "text of %zu bytes is longer than 1 GiB", len);
    Scratch sc = {0};
    sc.region = onig_region_new();
    IntList out = {0};
    if (add_special_tokens)
        for (int i = 0; i < t->prefix.n; i++) int_add(&out, t->prefix.p[i]);
    int rc = encode_text(t, text, len, &sc, &out);
    if (add_special_tokens)
        for (int i = 0; i < t->suffix.n; i++) int_add(&out, t->suffix.p[i]);
    scratch_free(&sc);
    if (rc) {
        free(out.p);
        return rc;
    }
    *ids = out.p ? out.p : xmalloc(sizeof(int));
    *n = out.n;
    return PS_OK;
}
