/* Normalizers: NFC (GPT-NeoX/Pythia), Prepend and Replace (Llama-1/2 in the legacy layout:
 * "▁" in front, every space replaced by "▁"). A Sequence was flattened into steps at load. */
#include "tokenizer_impl.h"

static void normalize_step(const NormStep *step, const char *s, size_t n, Buf *out, Scratch *sc) {
    switch (step->kind) {
    case NORM_NFC:
        unicode_nfc(out, s, n);
        break;
    case NORM_PREPEND:
        if (n) buf_add(out, step->text, strlen(step->text)); /* an empty text stays empty */
        buf_add(out, s, n);
        break;
    case NORM_REPLACE: {
        size_t done = 0, content_len = strlen(step->text);
        sc->matches.n = 0;
        pattern_matches(&step->pattern, s, n, sc->region, &sc->matches);
        for (int i = 0; i < sc->matches.n; i++) {
            buf_add(out, s + done, sc->matches.p[i].start - done);
            buf_add(out, step->text, content_len);
            done = sc->matches.p[i].end;
        }
        buf_add(out, s + done, n - done);
        break;
    }
    }
}

void normalize(const Tokenizer *t, const char *s, size_t n, Buf *out, Scratch *sc) {
    /* Each step reads the previous one's output; two buffers take turns. */
    const char *text = s;
    size_t len = n;
    for (int i = 0; i < t->n_norm; i++) {
        Buf *next = &sc->norm[i % 2];
        next->len = 0;
        buf_add(next, "", 0);
        normalize_step(&t->norm[i], text, len, next, sc);
        text = next->p;
        len = next->len;
    }
    buf_add(out, text, len);
}
