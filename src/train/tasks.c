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
    ex->T = T, ex->subject = ex->subject_len = 0;
    for (int t = 0; t < T; t++) ex->targets[t] = -1;
    for (int t = 2; t + 1 < 1 + filler; t++) ex->targets[t] = ex->tokens[t + 1]; /* = p(the word before t) */
    for (int i = 0; i + 1 < n; i++) ex->targets[T - n + i] = run[i + 1];
}

/* ioi: indirect object identification (Wang et al. 2022), synthetic. "when A and B went to the
 * store , B gave a drink to" -> A: of the two names, the one that is not repeated. Both orders
 * (A and B / B and A). Ten templates; the last two, and the name pairs with (a + 2b) % 5 == 0,
 * are never trained on: task_accuracy on "ioi-heldout" measures those, at the last position. */
enum { IOI_NAMES = 30, IOI_FIRST_NAME = 1 };
static const char *const ioi_words[] = {
    "<bos>", "Mary", "John", "Anna", "Peter", "Laura", "David", "Emma", "James", "Sarah", "Paul", "Julia", "Mark",
    "Clara", "Simon", "Alice", "Tom", "Rachel", "Adam", "Nina", "Oscar", "Lucy", "Henry", "Grace", "Victor", "Olivia",
    "Daniel", "Helen", "Ivan", "Kate", "Felix", "when", "after", "while", "and", "went", "to", "the", "store", ",",
    "gave", "a", "drink", "park", "ball", "garden", "flower", "were", "at", "lake", "handed", "book", "got", "house",
    "sent", "letter", "arrived", "school", "passed", "note", "sat", "in", "kitchen", "offered", "cake", "walked",
    "market", "threw", "coin", "ran", "beach", "showed", "shell", "stayed", "hotel", "lent", "pen",
};
enum { IOI_VOCAB = sizeof ioi_words / sizeof ioi_words[0] };
/* Templates: 'A' the first name, 'B' the second, 'S' the repeated subject. */
static const char *const ioi_templates[][14] = {
    {"when", "A", "and", "B", "went", "to", "the", "store", ",", "S", "gave", "a", "drink", "to"},
    {"when", "A", "and", "B", "went", "to", "the", "park", ",", "S", "gave", "a", "ball", "to"},
    {"after", "A", "and", "B", "went", "to", "the", "garden", ",", "S", "gave", "a", "flower", "to"},
    {"while", "A", "and", "B", "were", "at", "the", "lake", ",", "S", "handed", "a", "book", "to"},
    {"when", "A", "and", "B", "got", "to", "the", "house", ",", "S", "sent", "a", "letter", "to"},
    {"after", "A", "and", "B", "arrived", "at", "the", "school", ",", "S", "passed", "a", "note", "to"},
    {"while", "A", "and", "B", "sat", "in", "the", "kitchen", ",", "S", "offered", "a", "cake", "to"},
    {"when", "A", "and", "B", "walked", "to", "the", "market", ",", "S", "threw", "a", "coin", "to"},
    {"after", "A", "and", "B", "ran", "to", "the", "beach", ",", "S", "showed", "a", "shell", "to"},
    {"while", "A", "and", "B", "stayed", "at", "the", "hotel", ",", "S", "lent", "a", "pen", "to"},
};
enum { IOI_TEMPLATES = 10, IOI_TRAIN_TEMPLATES = 8 };

static int ioi_word(const char *w) {
    for (int i = 0; i < IOI_VOCAB; i++)
        if (strcmp(ioi_words[i], w) == 0) return i;
    return 0;
}

static int ioi_heldout_pair(int a, int b) { return (a + 2 * b) % 5 == 0; }

/* One IOI example from a template and two names; subject_first: the repeated name is A. */
static void ioi_fill(Example *ex, int template, int a, int b, int subject_first) {
    int T = 0;
    ex->tokens[T++] = 0;
    for (int i = 0; i < 14; i++) {
        const char *w = ioi_templates[template][i];
        ex->tokens[T++] = strcmp(w, "A") == 0 ? a : strcmp(w, "B") == 0 ? b : strcmp(w, "S") == 0 ? (subject_first ? a : b)
                                                                                                   : ioi_word(w);
    }
    ex->T = T, ex->subject = ex->subject_len = 0;
    for (int t = 0; t < T; t++) ex->targets[t] = -1;
    ex->targets[T - 1] = subject_first ? b : a; /* the indirect object: the name said once */
}

static void ioi_pair(Rng *rng, int heldout, int *a, int *b) {
    do {
        *a = IOI_FIRST_NAME + uniform_int(rng, 0, IOI_NAMES - 1);
        *b = IOI_FIRST_NAME + uniform_int(rng, 0, IOI_NAMES - 1);
    } while (*a == *b || ioi_heldout_pair(*a, *b) != heldout);
}

/* Training examples carry next-token targets at every position (the template's words, the
 * repeated name), not only the indirect object: far more signal per sequence. */
static void ioi_sample(Rng *rng, Example *ex) {
    int a, b;
    ioi_pair(rng, 0, &a, &b);
    ioi_fill(ex, uniform_int(rng, 0, IOI_TRAIN_TEMPLATES - 1), a, b, uniform_int(rng, 0, 1));
    for (int t = 0; t + 1 < ex->T; t++) ex->targets[t] = ex->tokens[t + 1];
}

/* Never trained on: held-out templates with any pair, and held-out pairs with any template. */
static void ioi_heldout_sample(Rng *rng, Example *ex) {
    int a, b, new_template = uniform_int(rng, 0, 1);
    ioi_pair(rng, !new_template, &a, &b);
    int template = new_template ? uniform_int(rng, IOI_TRAIN_TEMPLATES, IOI_TEMPLATES - 1)
                                : uniform_int(rng, 0, IOI_TRAIN_TEMPLATES - 1);
    ioi_fill(ex, template, a, b, uniform_int(rng, 0, 1));
}

/* facts: fact recall, the task ROME's causal tracing studies (Meng et al. 2022). A subject is a
 * first name and a surname (12 x 12 = 144 people); each has, for each of four relations, an
 * object drawn once from that relation's six (a fixed table, so the model must memorise 576
 * facts). "<bos> [prefix] Ada Baker plays the" -> piano. The prefix (none, or one of three) moves
 * the subject, so a job's prompts have subjects at different positions. Only the object is a
 * target: nothing else in the sequence can be predicted. */
enum { FACT_NAMES = 12, FACT_RELATIONS = 4, FACT_OBJECTS = 6, FACT_PREFIXES = 4 };
static const char *const fact_words[] = {
    "<bos>", "Ada", "Ben", "Cora", "Dov", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jon", "Kim", "Lev",
    "Abbot", "Baker", "Carver", "Dalton", "Ellis", "Fisher", "Garner", "Hollis", "Irving", "Jensen", "Keller", "Lowell",
    "lives", "in", "plays", "the", "speaks", "works", "as", "a",
    "Paris", "Rome", "Oslo", "Cairo", "Lima", "Tokyo",
    "piano", "violin", "drums", "flute", "guitar", "cello",
    "French", "Italian", "Norwegian", "Arabic", "Spanish", "Japanese",
    "doctor", "farmer", "pilot", "chef", "nurse", "lawyer",
    "indeed", "everyone", "knows", "that", "I", "heard",
};
enum { FACT_VOCAB = sizeof fact_words / sizeof fact_words[0], FACT_FIRST = 1, FACT_SURNAME = 13, FACT_OBJECT = 33 };
static const char *const fact_relations[FACT_RELATIONS][4] = {
    {"lives", "in"}, {"plays", "the"}, {"speaks"}, {"works", "as", "a"}};
static const char *const fact_prefixes[FACT_PREFIXES][4] = {{NULL}, {"indeed"}, {"everyone", "knows", "that"}, {"I", "heard", "that"}};

static int fact_word(const char *w) {
    for (int i = 0; i < FACT_VOCAB; i++)
        if (strcmp(fact_words[i], w) == 0) return i;
    return 0;
}

/* The object of (person, relation): the fixed table, drawn from its own stream. */
static int fact_object(int person, int relation) {
    Rng r;
    rng_seed(&r, 0x66616374, (uint64_t)person, (uint64_t)relation);
    return FACT_OBJECT + relation * FACT_OBJECTS + (int)(rng_uniform(&r) * FACT_OBJECTS);
}

static void facts_sample(Rng *rng, Example *ex) {
    int person = uniform_int(rng, 0, FACT_NAMES * FACT_NAMES - 1), relation = uniform_int(rng, 0, FACT_RELATIONS - 1);
    int prefix = uniform_int(rng, 0, FACT_PREFIXES - 1), T = 0;
    ex->tokens[T++] = 0;
    for (int i = 0; i < 4 && fact_prefixes[prefix][i]; i++) ex->tokens[T++] = fact_word(fact_prefixes[prefix][i]);
    ex->subject = T, ex->subject_len = 2;
    ex->tokens[T++] = FACT_FIRST + person / FACT_NAMES;
    ex->tokens[T++] = FACT_SURNAME + person % FACT_NAMES;
    for (int i = 0; i < 4 && fact_relations[relation][i]; i++) ex->tokens[T++] = fact_word(fact_relations[relation][i]);
    ex->T = T;
    for (int t = 0; t < T; t++) ex->targets[t] = -1;
    ex->targets[T - 1] = fact_object(person, relation);
}

static const Task tasks[] = {
    {"induction", 64, words, induction_sample},
    {"ioi", IOI_VOCAB, ioi_words, ioi_sample},
    {"ioi-heldout", IOI_VOCAB, ioi_words, ioi_heldout_sample},
    {"facts", FACT_VOCAB, fact_words, facts_sample},
};

const Task *task_find(const char *name) {
    for (size_t i = 0; i < sizeof tasks / sizeof tasks[0]; i++)
        if (strcmp(tasks[i].name, name) == 0) return &tasks[i];
    return NULL;
}
