/* The inside of a Tokenizer, shared by the files that implement it: tokenizer.c (loading and
 * lookup), unicode.c (UTF-8, NFC), normalize.c, pretokenize.c, bpe.c (the models), encode.c
 * (the pipeline) and decode.c. Nothing outside src/model includes this header (the unit tests
 * do, to test the pieces one by one).
 *
 * The pipeline follows Hugging Face tokenizers (tokenizers/src/tokenizer/mod.rs): split the
 * text on added tokens that match before normalization, normalize the rest, split again on
 * added tokens that match after it, pre-tokenize, run the model on each pre-token, and let the
 * template put special tokens around the result. */
#ifndef PATCHSWEEP_TOKENIZER_IMPL_H
#define PATCHSWEEP_TOKENIZER_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <oniguruma.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

/* ---- growable buffers ------------------------------------------------------------------- */
typedef struct { char *p; size_t len, cap; } Buf;
typedef struct { int *p; int n, cap; } IntList;
typedef struct {
    size_t start, end;
    int flag; /* what the span is: a match, an added token's index, ... (per use) */
} Span;
typedef struct { Span *p; int n, cap; } SpanList;

static inline void buf_reserve(Buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}
static inline void buf_add(Buf *b, const void *s, size_t n) {
    buf_reserve(b, n);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0; /* always NUL-terminated, so the text can be printed or compared */
}
static inline void int_add(IntList *l, int v) {
    if (l->n == l->cap) l->p = xrealloc(l->p, sizeof(int) * (size_t)(l->cap = l->cap ? 2 * l->cap : 64));
    l->p[l->n++] = v;
}
static inline void span_add(SpanList *l, size_t start, size_t end, int flag) {
    if (l->n == l->cap) l->p = xrealloc(l->p, sizeof(Span) * (size_t)(l->cap = l->cap ? 2 * l->cap : 64));
    l->p[l->n++] = (Span){start, end, flag};
}

/* ---- Unicode (unicode.c; tables in the generated unicode_tables.c) ----------------------- */
typedef struct { uint32_t first, last; } UnicodeRange;
typedef struct { uint32_t first, last; uint8_t ccc; } CombiningClass;
typedef struct { uint32_t cp, first, second; } Decomposition;
typedef struct { uint32_t first, second, composite; } Composition;
extern const char unicode_version[];
extern const UnicodeRange nfc_unstable[];
extern const int n_nfc_unstable;
extern const CombiningClass unicode_ccc[];
extern const int n_unicode_ccc;
extern const Decomposition unicode_decomp[];
extern const int n_unicode_decomp;
extern const Composition unicode_compose[];
extern const int n_unicode_compose;

/* The code point at s[*i] (of n bytes); advances *i. Returns 0 on malformed UTF-8 (overlong
 * forms, surrogates and values past U+10FFFF included), leaving *i unchanged. */
int utf8_next(const char *s, size_t n, size_t *i, uint32_t *cp);
/* Bytes of the longest valid UTF-8 prefix of s. */
size_t utf8_valid_length(const char *s, size_t n);
/* Appends the UTF-8 form of cp. */
void utf8_add(Buf *b, uint32_t cp);
/* Appends s, each malformed sequence replaced by U+FFFD as Rust's String::from_utf8_lossy does
 * (one replacement per maximal invalid subpart). */
void utf8_add_lossy(Buf *b, const char *s, size_t n);
/* GPT-2's bytes_to_unicode: the character that stands for byte b, and back (-1 for a
 * character that stands for no byte). */
void byte_level_add(Buf *b, unsigned char byte);
int byte_level_byte(uint32_t cp);
/* Unicode White_Space (Rust's char::is_whitespace and the regex crate's \s). */
int unicode_is_white_space(uint32_t cp);
/* Appends the NFC form of s (valid UTF-8). */
void unicode_nfc(Buf *out, const char *s, size_t n);

/* ---- patterns: a literal string or an Oniguruma regex ---------------------------------------- */
typedef struct {
    OnigRegex regex; /* NULL for a literal */
    char *literal;
    size_t literal_len;
} Pattern;
/* The non-overlapping matches of p in s[0..n), left to right, as Hugging Face finds them (an
 * empty match right after the previous match is skipped). region is scratch for Oniguruma. */
void pattern_matches(const Pattern *p, const char *s, size_t n, OnigRegion *region, SpanList *out);
/* Compiles a regex with Oniguruma's Ruby syntax, as the onig crate does; PS_EUSER naming
 * where on a bad pattern. */
int regex_compile(OnigRegex *re, const char *pattern, const char *where);

/* ---- components ---------------------------------------------------------------------------- */
typedef enum { NORM_NFC, NORM_PREPEND, NORM_REPLACE } NormalizerKind;
typedef struct {
    NormalizerKind kind;
    char *text;      /* what Prepend puts in front, or what Replace writes for each match */
    Pattern pattern; /* Replace */
} NormStep;

typedef enum { PRE_BYTE_LEVEL, PRE_SPLIT, PRE_METASPACE, PRE_WHITESPACE_SPLIT } PreTokenizerKind;
typedef enum {
    SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_WITH_PREVIOUS, SPLIT_MERGED_WITH_NEXT, SPLIT_CONTIGUOUS
} SplitBehavior;
typedef enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER } PrependScheme;
typedef struct {
    PreTokenizerKind kind;
    int add_prefix_space, use_regex; /* ByteLevel */
    Pattern pattern;                 /* Split */
    SplitBehavior behavior;
    int invert;
    char replacement[5];             /* Metaspace: one character, UTF-8 */
    PrependScheme prepend_scheme;
    int split;
} PreStep;

typedef enum { DEC_BYTE_LEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTE_FALLBACK, DEC_FUSE, DEC_STRIP } DecoderKind;
typedef struct {
    DecoderKind kind;
    char replacement[5];          /* Metaspace */
    PrependScheme prepend_scheme;
    Pattern pattern;              /* Replace */
    char *content;
    char strip[5];                /* Strip: the character, UTF-8 */
    int start, stop;
} DecStep;

typedef struct {
    int id;
    char *content;
    char *match;      /* what is looked for: the content, normalized when the token is */
    size_t match_len;
    int special, normalized, lstrip, rstrip, single_word;
} AddedToken;

typedef enum { MODEL_BPE, MODEL_WORD_LEVEL } ModelKind;

/* string -> id, open addressing over the token strings themselves */
typedef struct {
    int32_t *slots; /* id or -1 */
    size_t mask;
} IdTable;

typedef struct {
    uint64_t key; /* (left id + 1) << 32 | (right id + 1); 0 = empty slot */
    uint32_t rank;
    int32_t merged;
} MergeSlot;

struct Tokenizer {
    char *path;            /* for messages */
    int n_ids;             /* ids are 0 .. n_ids-1; some may name nothing */
    Buf strings;           /* every token string, NUL-terminated */
    size_t *string_at;     /* [n_ids] offset in strings, SIZE_MAX when the id names nothing */
    Buf displays;          /* the same for display forms */
    size_t *display_at;
    IdTable vocab;         /* model.vocab only, as the model sees it */

    ModelKind model;
    MergeSlot *merges;
    size_t merge_mask;
    int unk_id;            /* -1 when none */
    int fuse_unk, byte_fallback, ignore_merges;
    char *subword_prefix, *word_suffix; /* "" when unset */
    int byte_ids[256];     /* ids of "<0x00>".."<0xFF>" (byte fallback), -1 when absent */

    AddedToken *added;
    int n_added;
    int any_raw_added, any_normalized_added;
    unsigned char added_starts[2][256]; /* [normalized][byte]: some added token starts with it */

    NormStep *norm;
    int n_norm;
    PreStep *pre;
    int n_pre;
    DecStep *dec;
    int n_dec, has_decoder;

    IntList prefix, suffix; /* what the template puts before and after the text */
    int has_template;
    int bos_id;             /* -1 when unknown */

    OnigRegex byte_level_regex; /* GPT-2's split pattern, compiled when a ByteLevel step needs it */
    OnigRegex word_char;        /* one character of the regex crate's \w (single_word) */
};

/* Lookups. */
int vocab_find(const Tokenizer *t, const char *s, size_t n); /* model.vocab; -1 when absent */
const char *token_string(const Tokenizer *t, int id);         /* NULL when id names nothing */
int added_token_of(const Tokenizer *t, int id);               /* index in t->added, or -1 */
const MergeSlot *merge_find(const Tokenizer *t, int left, int right);

/* ---- the encoder's scratch: everything one encode call grows, so the per-character loops
 * never allocate ---------------------------------------------------------------------------- */
typedef struct {
    size_t start, len;
    int at_start; /* begins at offset 0 of the original text (Metaspace "first") */
} Piece;
typedef struct {
    Buf text;
    Piece *p;
    int n, cap;
} PieceList;

typedef struct {
    int id, prev, next;
    size_t len; /* bytes; 0 marks a symbol merged into its left neighbour */
} Symbol;
typedef struct {
    uint32_t rank;
    int pos, merged;
} MergeCandidate;
typedef struct {
    uint64_t hash;
    size_t key_at, key_len;
    int ids_at, n_ids; /* n_ids < 0: empty slot */
} CacheSlot;

typedef struct {
    PieceList pieces, next;
    Buf tmp, norm[2], normalized;
    SpanList matches, parts, raw_segments, segments;
    OnigRegion *region;
    Symbol *symbols;
    int symbols_cap;
    MergeCandidate *heap;
    int heap_cap;
    CacheSlot *cache;     /* pre-token -> ids, per call (the Tokenizer stays read-only) */
    int cache_used;
    Buf cache_keys;
    IntList cache_ids;
} Scratch;

void scratch_free(Scratch *s);

/* ---- the stages ---------------------------------------------------------------------------- */
/* Appends the normalized text of s to out. */
void normalize(const Tokenizer *t, const char *s, size_t n, Buf *out, Scratch *sc);
/* Pre-tokenizes s into sc->pieces (replacing what was there). */
void pre_tokenize(const Tokenizer *t, const char *s, size_t n, int at_start, Scratch *sc);
/* The model's ids for one pre-token, appended to out; PS_EUSER when a word-level model meets
 * an unknown word without an unknown token. */
int model_tokenize(const Tokenizer *t, const char *s, size_t n, Scratch *sc, IntList *out);

#endif
