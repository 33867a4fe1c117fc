/* UTF-8 and the bits of Unicode the tokenizers need that the regex engine does not give:
 * White_Space, and NFC (the normalizer of GPT-NeoX/Pythia files) from the tables that
 * tools/gen_unicode_tables.py generates from the Unicode Character Database. */
#include <stdlib.h>
#include "tokenizer_impl.h"

/* Length of the valid sequence at s[i] (1-4), or minus the length of its maximal invalid
 * subpart (the bytes a decoder consumes before it sees the sequence cannot be completed), as
 * the Unicode standard recommends and Rust's from_utf8_lossy does. */
static int utf8_scan(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    unsigned lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;       /* no overlong forms */
        if (c == 0xED) hi = 0x9F;       /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;       /* nothing past U+10FFFF */
    } else return -1;
    uint32_t v = c & (0x7Fu >> len);
    for (int k = 1; k < len; k++) {
        if (i + (size_t)k >= n) return -k;
        unsigned b = s[i + (size_t)k];
        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return -k;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return len;
}

int utf8_next(const char *s, size_t n, size_t *i, uint32_t *cp) {
    int len = utf8_scan((const unsigned char *)s, n, *i, cp);
    if (len < 0) return 0;
    *i += (size_t)len;
    return 1;
}

size_t utf8_valid_length(const char *s, size_t n) {
    size_t i = 0;
    uint32_t cp;
    while (i < n && utf8_next(s, n, &i, &cp)) {}
    return i;
}

void utf8_add(Buf *b, uint32_t cp) {
    char c[4];
    int n;
    if (cp < 0x80) {
        c[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        c[0] = (char)(0xC0 | (cp >> 6));
        c[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        c[0] = (char)(0xE0 | (cp >> 12));
        c[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        c[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        c[0] = (char)(0xF0 | (cp >> 18));
        c[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        c[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        c[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_add(b, c, (size_t)n);
}

void utf8_add_lossy(Buf *b, const char *s, size_t n) {
    size_t i = 0, run = 0; /* s[run..i) is valid and not yet copied */
    while (i < n) {
        uint32_t cp;
        int len = utf8_scan((const unsigned char *)s, n, i, &cp);
        if (len > 0) {
            i += (size_t)len;
            continue;
        }
        buf_add(b, s + run, i - run);
        buf_add(b, "\xEF\xBF\xBD", 3); /* U+FFFD */
        i += (size_t)-len;
        run = i;
    }
    buf_add(b, s + run, i - run);
}

int unicode_is_white_space(uint32_t cp) {
    /* The White_Space property (PropList.txt), unchanged since Unicode 6.3. */
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* ---- NFC (Unicode Standard Annex #15): decompose canonically, order the combining marks,
 * compose again. Hangul syllables are composed and decomposed arithmetically. ------------- */

enum { HANGUL_S = 0xAC00, HANGUL_L = 0x1100, HANGUL_V = 0x1161, HANGUL_T = 0x11A7,
       HANGUL_LN = 19, HANGUL_VN = 21, HANGUL_TN = 28, HANGUL_N = HANGUL_VN * HANGUL_TN,
       HANGUL_SN = HANGUL_LN * HANGUL_N };

static int in_ranges(const UnicodeRange *r, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].first) hi = mid - 1;
        else if (cp > r[mid].last) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static int combining_class(uint32_t cp) {
    int lo = 0, hi = n_unicode_ccc - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < unicode_ccc[mid].first) hi = mid - 1;
        else if (cp > unicode_ccc[mid].last) lo = mid + 1;
        else return unicode_ccc[mid].ccc;
    }
    return 0;
}

static const Decomposition *decomposition(uint32_t cp) {
    int lo = 0, hi = n_unicode_decomp - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < unicode_decomp[mid].cp) hi = mid - 1;
        else if (cp > unicode_decomp[mid].cp) lo = mid + 1;
        else return &unicode_decomp[mid];
    }
    return NULL;
}

/* The primary composite of (a, b), or 0. */
static uint32_t composite(uint32_t a, uint32_t b) {
    if (a >= HANGUL_L && a < HANGUL_L + HANGUL_LN && b >= HANGUL_V && b < HANGUL_V + HANGUL_VN)
        return HANGUL_S + ((a - HANGUL_L) * HANGUL_VN + (b - HANGUL_V)) * HANGUL_TN;
    if (a >= HANGUL_S && a < HANGUL_S + HANGUL_SN && (a - HANGUL_S) % HANGUL_TN == 0 && b > HANGUL_T &&
        b < HANGUL_T + HANGUL_TN)
        return a + (b - HANGUL_T);
    int lo = 0, hi = n_unicode_compose - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const Composition *c = &unicode_compose[mid];
        if (a < c->first || (a == c->first && b < c->second)) hi = mid - 1;
        else if (a > c->first || b > c->second) lo = mid + 1;
        else return c->composite;
    }
    return 0;
}

typedef struct { uint32_t *p; int n, cap; } CodePoints;

static void cp_add(CodePoints *c, uint32_t cp) {
    if (c->n == c->cap) c->p = xrealloc(c->p, sizeof(uint32_t) * (size_t)(c->cap = c->cap ? 2 * c->cap : 64));
    c->p[c->n++] = cp;
}

static void decompose(CodePoints *out, uint32_t cp) {
    if (cp >= HANGUL_S && cp < HANGUL_S + HANGUL_SN) {
        uint32_t s = cp - HANGUL_S;
        cp_add(out, HANGUL_L + s / HANGUL_N);
        cp_add(out, HANGUL_V + (s % HANGUL_N) / HANGUL_TN);
        if (s % HANGUL_TN) cp_add(out, HANGUL_T + s % HANGUL_TN);
        return;
    }
    const Decomposition *d = decomposition(cp);
    if (!d) {
        cp_add(out, cp);
        return;
    }
    decompose(out, d->first);
    if (d->second) decompose(out, d->second);
}

void unicode_nfc(Buf *out, const char *s, size_t n) {
    /* Most text holds no character NFC could change: copy it as it is. */
    size_t i = 0;
    uint32_t cp;
    int stable = 1;
    while (stable && i < n && utf8_next(s, n, &i, &cp))
        if (cp >= 0x300 && in_ranges(nfc_unstable, n_nfc_unstable, cp)) stable = 0;
    if (stable) {
        buf_add(out, s, n);
        return;
    }
    CodePoints c = {0};
    for (i = 0; i < n && utf8_next(s, n, &i, &cp);) decompose(&c, cp);
    /* Canonical order: a stable sort of each run of non-starters by combining class. */
    for (int k = 1; k < c.n; k++) {
        int cc = combining_class(c.p[k]);
        for (int j = k; cc && j > 0; j--) {
            int prev = combining_class(c.p[j - 1]);
            if (prev <= cc) break;
            uint32_t tmp = c.p[j];
            c.p[j] = c.p[j - 1];
            c.p[j - 1] = tmp;
        }
    }
    /* Canonical composition: each character joins the last starter unless a character of the
     * same or a higher class (or a starter) stands between them. */
    int starter = -1, last_class = 0, kept = 0;
    for (int k = 0; k < c.n; k++) {
        uint32_t ch = c.p[k];
        int cc = combining_class(ch);
        uint32_t comp = starter >= 0 && (last_class < cc || (last_class == 0 && kept == starter + 1))
                            ? composite(c.p[starter], ch)
                            : 0;
        if (comp) {
            c.p[starter] = comp;
            continue;
        }
        if (cc == 0) starter = kept;
        last_class = cc;
        c.p[kept++] = ch;
    }
    for (int k = 0; k < kept; k++) utf8_add(out, c.p[k]);
    free(c.p);
}
