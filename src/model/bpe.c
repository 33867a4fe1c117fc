/* The models: BPE exactly as Hugging Face runs it (tokenizers/src/models/bpe/model.rs
 * merge_word and word.rs merge_all), and WordLevel. A pre-token's ids are cached for the rest
 * of the encode call, as Hugging Face caches them: text repeats its words. */
#include "tokenizer_impl.h"

enum { CACHE_SLOTS = 1 << 15, CACHE_MAX_KEY = 256 }; /* Hugging Face caches pre-tokens shorter than 256 bytes */

/* ---- the merge queue: a binary min-heap on (rank, position) -------------------------------- */

static int before(const MergeCandidate *a, const MergeCandidate *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(Scratch *sc, int *n, MergeCandidate m) {
    if (*n == sc->heap_cap)
        sc->heap = xrealloc(sc->heap, sizeof(MergeCandidate) * (size_t)(sc->heap_cap = sc->heap_cap ? 2 * sc->heap_cap : 64));
    int i = (*n)++;
    while (i > 0 && before(&m, &sc->heap[(i - 1) / 2])) {
        sc->heap[i] = sc->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    sc->heap[i] = m;
}

static MergeCandidate heap_pop(Scratch *sc, int *n) {
    MergeCandidate top = sc->heap[0], last = sc->heap[--*n];
    int i = 0;
    for (;;) {
        int child = 2 * i + 1;
        if (child >= *n) break;
        if (child + 1 < *n && before(&sc->heap[child + 1], &sc->heap[child])) child++;
        if (!before(&sc->heap[child], &last)) break;
        sc->heap[i] = sc->heap[child];
        i = child;
    }
    sc->heap[i] = last;
    return top;
}

static void push_pair(const Tokenizer *t, Scratch *sc, int *n, int pos) {
    const Symbol *left = &sc->symbols[pos];
    const MergeSlot *m = merge_find(t, left->id, sc->symbols[left->next].id);
    if (m) heap_push(sc, n, (MergeCandidate){m->rank, pos, m->merged});
}

/* Merges the lowest-ranked adjacent pair, leftmost first, until none is left. A queue entry
 * whose pair has changed since is stale; as in Hugging Face, it is recognised by the pair no
 * longer merging into the same token. */
static void merge_all(const Tokenizer *t, Scratch *sc, int n_symbols) {
    Symbol *sym = sc->symbols;
    int n = 0;
    for (int i = 0; i + 1 < n_symbols; i++) push_pair(t, sc, &n, i);
    while (n > 0) {
        MergeCandidate top = heap_pop(sc, &n);
        Symbol *left = &sym[top.pos];
        if (left->len == 0 || left->next < 0) continue;
        Symbol right = sym[left->next];
        const MergeSlot *m = merge_find(t, left->id, right.id);
        if (!m || m->merged != top.merged) continue;
        sym[left->next].len = 0;
        left->id = top.merged;
        left->len += right.len;
        left->next = right.next;
        if (right.next >= 0) sym[right.next].prev = top.pos;
        if (left->prev >= 0) push_pair(t, sc, &n, left->prev);
        if (left->next >= 0) push_pair(t, sc, &n, top.pos);
    }
}

static void add_symbol(Scratch *sc, int *n, int id, size_t len) {
    if (*n == sc->symbols_cap) {
        sc->symbols_cap = sc->symbols_cap ? 2 * sc->symbols_cap : 64;
        sc->symbols = xrealloc(sc->symbols, sizeof(Symbol) * (size_t)sc->symbols_cap);
    }
    sc->symbols[*n] = (Symbol){id, *n - 1, -1, len};
    if (*n > 0) sc->symbols[*n - 1].next = *n;
    (*n)++;
}

/* The id of one character of a word, with the continuing-subword prefix (not on the first)
 * and the end-of-word suffix (on the last) when the model has them. */
static int char_id(const Tokenizer *t, const char *c, size_t len, int first, int last, Scratch *sc) {
    if (!t->subword_prefix[0] && !t->word_suffix[0]) return vocab_find(t, c, len);
    sc->tmp.len = 0;
    if (!first) buf_add(&sc->tmp, t->subword_prefix, strlen(t->subword_prefix));
    buf_add(&sc->tmp, c, len);
    if (last) buf_add(&sc->tmp, t->word_suffix, strlen(t->word_suffix));
    return vocab_find(t, sc->tmp.p, sc->tmp.len);
}

/* merge_word: one symbol per character; a character the vocabulary lacks becomes its bytes'
 * <0xNN> tokens (byte fallback), else the unknown token (runs fused when fuse_unk), else
 * nothing. Then the merges. */
static void bpe_word(const Tokenizer *t, const char *s, size_t n, Scratch *sc, IntList *out) {
    int n_symbols = 0, unk_pending = 0;
    size_t unk_len = 0;
    for (size_t i = 0; i < n;) {
        size_t start = i;
        uint32_t cp;
        if (!utf8_next(s, n, &i, &cp)) i++;
        size_t len = i - start;
        int id = char_id(t, s + start, len, start == 0, i == n, sc);
        if (id >= 0) {
            if (unk_pending) add_symbol(sc, &n_symbols, t->unk_id, unk_len);
            unk_pending = 0;
            add_symbol(sc, &n_symbols, id, len);
            continue;
        }
        int bytes_known = t->byte_fallback;
        for (size_t k = start; k < i && bytes_known; k++) bytes_known = t->byte_ids[(unsigned char)s[k]] >= 0;
        if (bytes_known) {
            /* Hugging Face leaves a pending unknown token pending here, so it lands after these */
            for (size_t k = start; k < i; k++) add_symbol(sc, &n_symbols, t->byte_ids[(unsigned char)s[k]], 1);
            continue;
        }
        if (t->unk_id < 0) continue;
        if (unk_pending && t->fuse_unk) {
            unk_len += len;
            continue;
        }
        if (unk_pending) add_symbol(sc, &n_symbols, t->unk_id, unk_len);
        unk_pending = 1;
        unk_len = len;
    }
    if (unk_pending) add_symbol(sc, &n_symbols, t->unk_id, unk_len);
    merge_all(t, sc, n_symbols);
    for (int i = 0; i < n_symbols; i++)
        if (sc->symbols[i].len) int_add(out, sc->symbols[i].id);
}

/* ---- the per-call cache ------------------------------------------------------------------- */

static CacheSlot *cache_slot(Scratch *sc, const char *s, size_t n, uint64_t hash) {
    if (!sc->cache) {
        sc->cache = xmalloc(sizeof(CacheSlot) * CACHE_SLOTS);
        for (int i = 0; i < CACHE_SLOTS; i++) sc->cache[i].n_ids = -1;
    }
    for (size_t h = hash & (CACHE_SLOTS - 1);; h = (h + 1) & (CACHE_SLOTS - 1)) {
        CacheSlot *c = &sc->cache[h];
        if (c->n_ids < 0) return c;
        if (c->hash == hash && c->key_len == n && memcmp(sc->cache_keys.p + c->key_at, s, n) == 0) return c;
    }
}

static void cache_clear(Scratch *sc) {
    for (int i = 0; i < CACHE_SLOTS; i++) sc->cache[i].n_ids = -1;
    sc->cache_used = 0;
    sc->cache_keys.len = 0;
    sc->cache_ids.n = 0;
}

int model_tokenize(const Tokenizer *t, const char *s, size_t n, Scratch *sc, IntList *out) {
    if (n == 0) return PS_OK;
    int whole = t->model == MODEL_WORD_LEVEL || t->ignore_merges ? vocab_find(t, s, n) : -1;
    if (whole >= 0) {
        int_add(out, whole);
        return PS_OK;
    }
    if (t->model == MODEL_WORD_LEVEL) {
        if (t->unk_id < 0)
            return ps_fail(PS_EUSER, "%s: \"%.*s\" is not in the vocabulary, and model.unk_token is not set", t->path,
                           (int)(n > 60 ? 60 : n), s);
        int_add(out, t->unk_id);
        return PS_OK;
    }
    if (n >= CACHE_MAX_KEY) {
        bpe_word(t, s, n, sc, out);
        return PS_OK;
    }
    uint64_t hash = hash_bytes(HASH_INIT, s, n);
    CacheSlot *c = cache_slot(sc, s, n, hash);
    if (c->n_ids >= 0) {
        for (int i = 0; i < c->n_ids; i++) int_add(out, sc->cache_ids.p[c->ids_at + i]);
        return PS_OK;
    }
    int first = out->n;
    bpe_word(t, s, n, sc, out);
    if (sc->cache_used >= CACHE_SLOTS / 2) { /* full enough: start over rather than evict */
        cache_clear(sc);
        c = cache_slot(sc, s, n, hash);
    }
    *c = (CacheSlot){hash, sc->cache_keys.len, n, sc->cache_ids.n, out->n - first};
    buf_add(&sc->cache_keys, s, n);
    for (int i = first; i < out->n; i++) int_add(&sc->cache_ids, out->p[i]);
    sc->cache_used++;
    return PS_OK;
}
