/* Training tasks whose mechanism is known.
 *
 * induction: <bos>, a filler chain, then a run A of distinct random words, then A again. The
 * loss is on the second copy of A from its second word on (predicting A[i+1] after A[i] needs
 * an induction circuit: find the earlier A[i], copy the word after it), and on the filler.
 * In the filler each word is a fixed permutation of the word two before it, x y p(x) p(y)
 * p(p(x)) ...: predicting it needs the previous token and nothing repeats, so, as in natural
 * text, a previous-token head pays for itself early, and induction then forms on top of it
 * (K-composition, Olsson et al. 2022). On random words alone, gradient descent found other
 * circuits (no previous-token head) that solve the task just as well. */
#include <string.h>
#include "patchsweep/train.h"

static const char *const words[64] = {
    "<bos>", "apple", "river", "stone", "cloud", "tiger", "piano", "lemon", "chair", "ocean", "pencil", "garden",
    "rocket", "violin", "candle", "forest", "mirror", "bridge", "castle", "dragon", "engine", "falcon", "guitar",
    "hammer", "island", "jacket", "kettle", "ladder", "magnet", "needle", "orange", "parrot", "quartz", "rabbit",
    "saddle", "tunnel", "umbrella", "valley", "wagon", "yogurt", "zebra", "anchor", "basket", "cactus", "desert",
    "feather", "glacier", "harbor", "igloo", "jungle", "kayak", "lantern", "meadow", "nickel", "oyster", "pepper",
    "quilt", "ribbon", "spider", "turtle", "velvet", "walrus", "yarn", "zipper",
};

static int uniform_int(Rng *rng, int lo, int hi) { return lo + (int)(rng_uniform(rng) * (hi - lo + 1)); }

/* The filler's fixed permutation of the words 1..63. */
static int filler_next(int word) {
    static int perm[64];
    if (!perm[1]) {
        Rng r;
        rng_seed(&r, 0x7065726d, 0, 0);
        for (int i = 1; i < 64; i++) perm[i] = i;
        for (int i = 63; i > 1; i--) {
            int j = 1 + (int)(rng_uniform(&r) * i), tmp = perm[i];
            perm[i] = perm[j], perm[j] = tmp;
        }
    }
    return perm[word];
}

static void induction_sample(Rng *rng, Example *ex) {
    int filler = uniform_int(rng, 3, 12), n = uniform_int(rng, 6, 10), run[64];
    /* n distinct words out of 1..63 (partial Fisher-Yates) */
    int pool[63];
    for (int i = 0; i < 63; i++) pool[i] = i + 1;
    for (int i = 0; i < n; i++) {
        int j = uniform_int(rng, i, 62), tmp = pool[i];
        pool[i] = pool[j], pool[j] = tmp;
        run[i] = pool[i];
    }
    int T = 0;
    ex->tokens[T++] = 0;
    ex->tokens[T++] = uniform_int(rng, 1, 63);
    ex->tokens[T++] = uniform_int(rng, 1, 63);
    for (int i = 2; i < filler; i++, T++) ex->tokens[T] = filler_next(ex->tokens[T - 2]);
    for (int copy = 0; copy < 2; copy++)
        for (int i = 0; i < n; i++) ex->tokens[T++] = run[i];
    ex->T = T;
    for (int t = 0; t < T; t++) ex->targets[t] = -1;
    for (int t = 2; t + 1 < 1 + filler; t++) ex->targets[t] = ex->tokens[t + 1]; /* = p(the word before t) */
    for (int i = 0; i + 1 < n; i++) ex->targets[T - n + i] = run[i + 1];
}

static const Task tasks[] = {
    {"induction", 64, words, induction_sample},
};

const Task *task_find(const char *name) {
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (strcmp(tasks[i].name, name) == 0) return &tasks[i];
    return NULL;
}
