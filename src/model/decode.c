/* Decoding ids into text: the token strings go through the decoder steps (a Sequence was
 * flattened at load), each turning a list of strings into a new one, then are joined, as in
 * Hugging Face's TokenizerImpl::decode. Without a decoder the tokens are joined with spaces. */
#include <stdlib.h>
#include "tokenizer_impl.h"

typedef struct {
    Buf text;
    SpanList at; /* each string's bytes in text */
} Strings;

static void strings_add(Strings *s, const char *p, size_t n) {
    span_add(&s->at, s->text.len, s->text.len + n, 0);
    buf_add(&s->text, p, n);
}

/* Appends to the last string (after strings_begin). */
static void strings_begin(Strings *s) { span_add(&s->at, s->text.len, s->text.len, 0); }
static void strings_extend(Strings *s, const char *p, size_t n) {
    buf_add(&s->text, p, n);
    s->at.p[s->at.n - 1].end = s->text.len;
}

static void strings_clear(Strings *s) {
    s->text.len = 0;
    s->at.n = 0;
}

/* All the strings as bytes (each character that stands for a byte becomes it; a string with
 * any other character is kept as it is), then read as UTF-8 with replacement characters. */
static void byte_level(const Strings *in, Strings *out) {
    Buf bytes = {0};
    for (int i = 0; i < in->at.n; i++) {
        const char *s = in->text.p + in->at.p[i].start;
        size_t n = in->at.p[i].end - in->at.p[i].start, mark = bytes.len, k = 0;
        uint32_t cp;
        int all = 1;
        while (all && k < n && utf8_next(s, n, &k, &cp)) {
            int b = byte_level_byte(cp);
            char c = (char)b;
            if (b < 0) all = 0;
            else buf_add(&bytes, &c, 1);
        }
        if (!all || k < n) {
            bytes.len = mark;
            buf_add(&bytes, s, n);
        }
    }
    strings_begin(out);
    Buf text = {0};
    utf8_add_lossy(&text, bytes.p ? bytes.p : "", bytes.len);
    strings_extend(out, text.p ? text.p : "", text.len);
    free(text.p);
    free(bytes.p);
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Runs of <0xNN> tokens become their bytes when those are UTF-8, else one U+FFFD per byte. */
static void byte_fallback(const Strings *in, Strings *out) {
    Buf run = {0};
    for (int i = 0; i <= in->at.n; i++) {
        const char *s = i < in->at.n ? in->text.p + in->at.p[i].start : NULL;
        size_t n = s ? in->at.p[i].end - in->at.p[i].start : 0;
        if (s && n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>' && hex_digit(s[3]) >= 0 && hex_digit(s[4]) >= 0) {
            char c = (char)(16 * hex_digit(s[3]) + hex_digit(s[4]));
            buf_add(&run, &c, 1);
            continue;
        }
        if (run.len && utf8_valid_length(run.p, run.len) == run.len) strings_add(out, run.p, run.len);
        else
            for (size_t k = 0; k < run.len; k++) strings_add(out, "\xEF\xBF\xBD", 3);
        run.len = 0;
        if (s) strings_add(out, s, n);
    }
    free(run.p);
}

static void replace(const DecStep *d, const Strings *in, Strings *out, OnigRegion *region) {
    SpanList m = {0};
    for (int i = 0; i < in->at.n; i++) {
        const char *s = in->text.p + in->at.p[i].start;
        size_t n = in->at.p[i].end - in->at.p[i].start, done = 0;
        m.n = 0;
        pattern_matches(&d->pattern, s, n, region, &m);
        strings_begin(out);
        for (int k = 0; k < m.n; k++) {
            strings_extend(out, s + done, m.p[k].start - done);
            strings_extend(out, d->content, strlen(d->content));
            done = m.p[k].end;
        }
        strings_extend(out, s + done, n - done);
    }
    free(m.p);
}

/* The replacement character becomes a space, except in the first token, where it goes (it
 * was prepended) unless the scheme never prepends. */
static void metaspace(const DecStep *d, const Strings *in, Strings *out) {
    size_t rep = strlen(d->replacement);
    for (int i = 0; i < in->at.n; i++) {
        const char *s = in->text.p + in->at.p[i].start;
        size_t n = in->at.p[i].end - in->at.p[i].start;
        strings_begin(out);
        for (size_t k = 0; k < n;) {
            if (k + rep <= n && memcmp(s + k, d->replacement, rep) == 0) {
                if (i > 0 || d->prepend_scheme == PREPEND_NEVER) strings_extend(out, " ", 1);
                k += rep;
            } else {
                strings_extend(out, s + k, 1);
                k++;
            }
        }
    }
}

/* Up to start copies of the character off the front of each token, up to stop off the back. */
static void strip(const DecStep *d, const Strings *in, Strings *out) {
    size_t c = strlen(d->strip);
    for (int i = 0; i < in->at.n; i++) {
        const char *s = in->text.p + in->at.p[i].start;
        size_t n = in->at.p[i].end - in->at.p[i].start;
        for (int k = 0; k < d->start && n >= c && memcmp(s, d->strip, c) == 0; k++) {
            s += c;
            n -= c;
        }
        for (int k = 0; k < d->stop && n >= c && memcmp(s + n - c, d->strip, c) == 0; k++) n -= c;
        strings_add(out, s, n);
    }
}

static void fuse(const Strings *in, Strings *out) {
    strings_add(out, in->text.p ? in->text.p : "", in->text.len);
}

char *tokenizer_decode(const Tokenizer *t, const int *ids, int n, int skip_special) {
    Strings a = {0}, b = {0};
    for (int i = 0; i < n; i++) {
        const char *s = token_string(t, ids[i]);
        int added = s ? added_token_of(t, ids[i]) : -1;
        /* as Hugging Face: ids that name nothing are skipped */
        if (!s || (skip_special && added >= 0 && t->added[added].special)) continue;
        strings_add(&a, s, strlen(s));
    }
    OnigRegion *region = onig_region_new();
    for (int k = 0; k < t->n_dec; k++) {
        const DecStep *d = &t->dec[k];
        strings_clear(&b);
        switch (d->kind) {
        case DEC_BYTE_LEVEL: byte_level(&a, &b); break;
        case DEC_BYTE_FALLBACK: byte_fallback(&a, &b); break;
        case DEC_REPLACE: replace(d, &a, &b, region); break;
        case DEC_METASPACE: metaspace(d, &a, &b); break;
        case DEC_STRIP: strip(d, &a, &b); break;
        case DEC_FUSE: fuse(&a, &b); break;
        }
        Strings swap = a;
        a = b;
        b = swap;
    }
    onig_region_free(region, 1);
    Buf out = {0};
    buf_add(&out, "", 0);
    for (int i = 0; i < a.at.n; i++) {
        if (!t->has_decoder && i > 0) buf_add(&out, " ", 1);
        buf_add(&out, a.text.p + a.at.p[i].start, a.at.p[i].end - a.at.p[i].start);
    }
    free(a.text.p);
    free(a.at.p);
    free(b.text.p);
    free(b.at.p);
    return out.p;
}
