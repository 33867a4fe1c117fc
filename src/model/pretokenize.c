/* Pre-tokenizers: ByteLevel (GPT-2, Pythia, Llama-3), Split (Llama-3's pattern), Metaspace
 * (Llama-2 without the legacy normalizer), WhitespaceSplit (word-level vocabularies). Each step
 * turns a list of pieces into a new one, as Hugging Face's PreTokenizedString::split does;
 * empty pieces are dropped. Regexes run in Oniguruma, Hugging Face's engine, unchanged. */
#include "tokenizer_impl.h"

static void piece_add(PieceList *l, const char *s, size_t n, int at_start) {
    if (l->n == l->cap) l->p = xrealloc(l->p, sizeof(Piece) * (size_t)(l->cap = l->cap ? 2 * l->cap : 64));
    l->p[l->n++] = (Piece){l->text.len, n, at_start};
    buf_add(&l->text, s, n);
}

static void pieces_clear(PieceList *l) {
    l->n = 0;
    l->text.len = 0;
}

/* ---- patterns ---------------------------------------------------------------------------- */

static size_t char_length(const char *s, size_t n, size_t at) {
    size_t i = at;
    uint32_t cp;
    return utf8_next(s, n, &i, &cp) ? i - at : 1;
}

static void literal_matches(const Pattern *p, const char *s, size_t n, SpanList *out) {
    size_t at = 0;
    while (at + p->literal_len <= n) {
        const char *hit = memchr(s + at, p->literal[0], n - at - p->literal_len + 1);
        if (!hit) break;
        size_t start = (size_t)(hit - s);
        if (memcmp(hit, p->literal, p->literal_len) == 0) {
            span_add(out, start, start + p->literal_len, 1);
            at = start + p->literal_len;
        } else {
            at = start + 1;
        }
    }
}

void pattern_matches(const Pattern *p, const char *s, size_t n, OnigRegion *region, SpanList *out) {
    if (!p->regex) {
        literal_matches(p, s, n, out);
        return;
    }
    /* The onig crate's find_iter: search on from the end of the last match, and step over an
     * empty match that sits right where the last match ended. */
    const OnigUChar *base = (const OnigUChar *)s, *end = base + n;
    size_t at = 0, last_end = (size_t)-1;
    while (at <= n) {
        int r = onig_search(p->regex, base, end, base + at, end, region, ONIG_OPTION_NONE);
        if (r < 0) break;
        size_t start = (size_t)region->beg[0], stop = (size_t)region->end[0];
        if (start == stop && stop == last_end) {
            at += at < n ? char_length(s, n, at) : 1;
            continue;
        }
        span_add(out, start, stop, 1);
        at = last_end = stop;
    }
}

/* The parts a split of s[0..n) at the matches keeps, per Hugging Face's NormalizedString::split:
 * matches and the text between them alternate; invert swaps which is which. */
static void split_parts(const SpanList *matches, size_t n, SplitBehavior how, int invert, SpanList *parts) {
    SpanList *all = parts; /* first every segment, flag = is a match; then folded in place */
    all->n = 0;
    size_t prev = 0;
    for (int i = 0; i < matches->n; i++) {
        if (matches->p[i].start > prev) span_add(all, prev, matches->p[i].start, invert);
        span_add(all, matches->p[i].start, matches->p[i].end, !invert);
        prev = matches->p[i].end;
    }
    if (prev < n) span_add(all, prev, n, invert);
    int kept = 0;
    if (how == SPLIT_MERGED_WITH_NEXT) {
        /* a match joins the text after it: fold from the right */
        int previous = 0;
        for (int i = all->n - 1; i >= 0; i--) {
            Span s = all->p[i];
            if (s.flag && !previous && kept > 0) all->p[all->n - kept].start = s.start;
            else all->p[all->n - ++kept] = (Span){s.start, s.end, 0};
            previous = s.flag;
        }
        memmove(all->p, all->p + all->n - kept, sizeof(Span) * (size_t)kept);
    } else {
        int previous = 0;
        for (int i = 0; i < all->n; i++) {
            Span s = all->p[i];
            int join = (how == SPLIT_CONTIGUOUS && s.flag == previous) ||
                       (how == SPLIT_MERGED_WITH_PREVIOUS && s.flag && !previous);
            if (join && kept > 0) all->p[kept - 1].end = s.end;
            else if (!(how == SPLIT_REMOVED && s.flag)) all->p[kept++] = (Span){s.start, s.end, 0};
            previous = s.flag;
        }
    }
    all->n = kept;
}

/* ---- byte level --------------------------------------------------------------------------- */

void byte_level_add(Buf *b, unsigned char byte) {
    uint32_t cp = byte;
    if (!((byte >= 33 && byte <= 126) || (byte >= 161 && byte <= 172) || byte >= 174))
        cp = byte <= 32 ? 256u + byte : byte <= 160 ? 256u + 33 + (byte - 127u) : 256u + 67;
    utf8_add(b, cp);
}

int byte_level_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    int k = (int)cp - 256;
    return k < 33 ? k : k < 67 ? 127 + (k - 33) : 173;
}

/* ---- the steps ----------------------------------------------------------------------------- */

static void emit_parts(PieceList *out, const char *s, const SpanList *parts, int at_start) {
    for (int i = 0; i < parts->n; i++)
        if (parts->p[i].end > parts->p[i].start)
            piece_add(out, s + parts->p[i].start, parts->p[i].end - parts->p[i].start, at_start && parts->p[i].start == 0);
}

static void byte_level(const Tokenizer *t, const PreStep *step, const char *s, size_t n, int at_start, Scratch *sc,
                       PieceList *out) {
    if (step->add_prefix_space && (n == 0 || s[0] != ' ')) {
        sc->tmp.len = 0;
        buf_add(&sc->tmp, " ", 1);
        buf_add(&sc->tmp, s, n);
        s = sc->tmp.p;
        n = sc->tmp.len;
    }
    sc->parts.n = 0;
    if (step->use_regex) {
        sc->matches.n = 0;
        pattern_matches(&(Pattern){.regex = t->byte_level_regex}, s, n, sc->region, &sc->matches);
        split_parts(&sc->matches, n, SPLIT_ISOLATED, 0, &sc->parts);
    } else {
        span_add(&sc->parts, 0, n, 0);
    }
    for (int i = 0; i < sc->parts.n; i++) {
        Span p = sc->parts.p[i];
        if (p.end == p.start) continue;
        if (out->n == out->cap) out->p = xrealloc(out->p, sizeof(Piece) * (size_t)(out->cap = out->cap ? 2 * out->cap : 64));
        Piece *piece = &out->p[out->n++];
        piece->start = out->text.len;
        piece->at_start = at_start && p.start == 0;
        buf_reserve(&out->text, 2 * (p.end - p.start));
        for (size_t k = p.start; k < p.end; k++) byte_level_add(&out->text, (unsigned char)s[k]);
        piece->len = out->text.len - piece->start;
    }
}

static void split(const PreStep *step, const char *s, size_t n, int at_start, Scratch *sc, PieceList *out) {
    sc->matches.n = 0;
    pattern_matches(&step->pattern, s, n, sc->region, &sc->matches);
    split_parts(&sc->matches, n, step->behavior, step->invert, &sc->parts);
    emit_parts(out, s, &sc->parts, at_start);
}

static void metaspace(const PreStep *step, const char *s, size_t n, int at_start, Scratch *sc, PieceList *out) {
    size_t rep_len = strlen(step->replacement);
    int starts_with = (n > 0 && s[0] == ' ') || (n >= rep_len && memcmp(s, step->replacement, rep_len) == 0);
    int prepend = step->prepend_scheme == PREPEND_ALWAYS || (step->prepend_scheme == PREPEND_FIRST && at_start);
    Buf *text = &sc->tmp;
    text->len = 0;
    buf_add(text, "", 0);
    if (prepend && !starts_with) buf_add(text, step->replacement, rep_len);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') buf_add(text, step->replacement, rep_len);
        else buf_add(text, s + i, 1);
    }
    if (!step->split) {
        piece_add(out, text->p, text->len, at_start);
        return;
    }
    Pattern at_replacement = {.literal = (char *)step->replacement, .literal_len = rep_len};
    sc->matches.n = 0;
    pattern_matches(&at_replacement, text->p, text->len, NULL, &sc->matches);
    split_parts(&sc->matches, text->len, SPLIT_MERGED_WITH_NEXT, 0, &sc->parts);
    emit_parts(out, text->p, &sc->parts, at_start);
}

static void whitespace_split(const char *s, size_t n, int at_start, Scratch *sc, PieceList *out) {
    sc->matches.n = 0;
    for (size_t i = 0; i < n;) {
        size_t start = i;
        uint32_t cp = 0;
        if (!utf8_next(s, n, &i, &cp)) i++;
        if (unicode_is_white_space(cp)) span_add(&sc->matches, start, i, 1);
    }
    split_parts(&sc->matches, n, SPLIT_REMOVED, 0, &sc->parts);
    emit_parts(out, s, &sc->parts, at_start);
}

void pre_tokenize(const Tokenizer *t, const char *s, size_t n, int at_start, Scratch *sc) {
    pieces_clear(&sc->pieces);
    piece_add(&sc->pieces, s, n, at_start);
    for (int k = 0; k < t->n_pre; k++) {
        const PreStep *step = &t->pre[k];
        PieceList *in = &sc->pieces, *out = &sc->next;
        pieces_clear(out);
        for (int i = 0; i < in->n; i++) {
            const char *text = in->text.p + in->p[i].start;
            size_t len = in->p[i].len;
            int first = in->p[i].at_start;
            switch (step->kind) {
            case PRE_BYTE_LEVEL: byte_level(t, step, text, len, first, sc, out); break;
            case PRE_SPLIT: split(step, text, len, first, sc, out); break;
            case PRE_METASPACE: metaspace(step, text, len, first, sc, out); break;
            case PRE_WHITESPACE_SPLIT: whitespace_split(text, len, first, sc, out); break;
            }
        }
        PieceList swap = sc->pieces;
        sc->pieces = sc->next;
        sc->next = swap;
    }
}
