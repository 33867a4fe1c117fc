/* The job spec (docs/job.md): what to patch, with what, measured how, written where.
 * Parsing checks structure, keys and types; job_check then checks the prompts against the
 * model (token ids, lengths, context). Every failure is one line naming the key or prompt. */
#ifndef PATCHSWEEP_JOB_H
#define PATCHSWEEP_JOB_H

#include <stdint.h>
#include "patchsweep/sites.h"


typedef enum { CORR_PAIR, CORR_GAUSSIAN, CORR_MEAN, CORR_ZERO, CORR_RESAMPLE } Corruption;
typedef enum { DIR_DENOISE, DIR_NOISE } Direction;
typedef enum { METRIC_LOGIT_DIFF, METRIC_LOGPROB, METRIC_PROB, METRIC_KL, N_METRICS } MetricKind;
typedef enum { EST_ATP, EST_ATP_QK, EST_ATP_STAR, N_ESTIMATES } Estimate;
typedef enum { POS_EACH, POS_ALL, POS_LIST } PositionMode;
/* Edge estimators (docs/edges.md, "Estimates"). */
typedef enum { EST_EAP, EST_EAP_IG, EST_EAP_IG_ACT, N_EDGE_ESTIMATES } EdgeEstimate;
/* The two ends of an edge (docs/edges.md, "The graph"): what writes into the residual stream and
 * what reads it. */
typedef enum { UP_EMBED, UP_HEAD, UP_MLP, N_UP_KINDS } UpKind;
typedef enum { DOWN_Q, DOWN_K, DOWN_V, DOWN_MLP_IN, DOWN_LOGITS, N_DOWN_KINDS } DownKind;

const char *corruption_name(Corruption c);
const char *direction_name(Direction d);
const char *metric_name(MetricKind m);
const char *estimate_name(Estimate e);
const char *edge_estimate_name(EdgeEstimate e);
const char *up_kind_name(UpKind k);     /* "embed", "head", "mlp": the filter's "from" names */
const char *down_kind_name(DownKind k); /* "q", "k", "v", "mlp_in", "logits": its "to" names */

/* The job's "edges" key: on = 0 when absent. A kind is kept when its bit (1 << kind) is set; a
 * layer when first <= layer <= last (embed passes any from-layers, logits any to-layers). */
typedef struct {
    int on;
    unsigned from_kinds, to_kinds;
    int from_first, from_last, to_first, to_last;
} EdgeFilter;

typedef struct {
    int *clean, *corrupt; /* corrupt is NULL unless the corruption is "pair" */
    int T;
    int answer, wrong;    /* -1 when absent */
    /* Text forms ("clean_text", ...), turned into ids by job_check with the model's tokenizer. */
    char *clean_text, *corrupt_text, *answer_text, *wrong_text;
    int *noise_positions, n_noise_positions; /* gaussian: this prompt's subject, or NULL for the job's */
    char **position_names;  /* this prompt's named positions ("S1", "IO", "END"), for the job's columns */
    int *named_positions;   /* where each sits (negative: from the end) */
    int n_named;
} Prompt;

/* What the gaussian noise's standard deviation is measured on (times its scale). */
typedef enum { NOISE_STD_VOCABULARY, NOISE_STD_SUBJECTS, NOISE_STD_CORPUS } NoiseStd;

/* ---- circuits (docs/circuits.md): the job's "circuits" key, read by `patchsweep circuit` ---- */
typedef enum { CSET_EDGES, CSET_NODES, CSET_RANK } CircuitSetKind;
typedef enum { RANK_EDGES, RANK_EFFECTS, RANK_RANDOM } RankSource;
typedef struct {
    char name[32];
    CircuitSetKind kind;
    char **names;          /* CSET_EDGES: edge names (may end in @COL); CSET_NODES: upstream node names */
    int n_names;
    RankSource by;         /* CSET_RANK: */
    char array[16];        /* exact, eap, ... (the dataset of /edges or /effects) */
    int signed_score;      /* "score": "signed" (1) or "abs" (0) */
    int metric;            /* index into the job's metrics */
    uint64_t seed;         /* "random" */
    int *k, n_k;           /* sizes of the curve (n_k = 0: explicit or threshold) */
    int has_threshold;
    double threshold;
    int specific;          /* "positions": "specific" (1) or "all" (0) */
} CircuitSet;
typedef enum { ABLATE_PAIR, ABLATE_MEAN, ABLATE_RESAMPLE, ABLATE_ZERO } Ablation;
typedef struct {
    int nodes;             /* granularity: 1 nodes, 0 edges */
    Ablation ablation;
    int seeds;             /* resample: seeds seed .. seed + seeds - 1 */
    uint64_t seed;
    int mean_set;          /* mean: index into CircuitsSpec.mean_sets, -1 for the job's prompts */
    char name[300];        /* "edges pair", "nodes mean:abc.jsonl", "edges resample:3" */
} CircuitChoice;
typedef struct {
    char label[256];       /* the file as the job names it */
    Prompt *prompts;
    int n;
} MeanSet;
typedef struct {
    CircuitSet *sets;
    int n_sets;
    CircuitChoice *choices; /* granularity-major */
    int n_choices;
    MeanSet *mean_sets;
    int n_mean_sets;
    char *canonical;        /* the key as normalised JSON (set by job_check: mean sets as token ids) */
} CircuitsSpec;

typedef struct {
    char path[4096];     /* the job file */
    char model_dir[4096];
    char output[4096];
    Prompt *prompts;
    int n_prompts;
    Corruption corruption;
    double noise_scale;  /* gaussian: noise std = noise_scale x std of token embeddings, measured on: */
    NoiseStd noise_std;
    char noise_corpus[4096]; /* NOISE_STD_CORPUS: a file of subjects, one per line (ids or text) */
    int *corpus_ids, n_corpus_ids; /* its tokens, read by job_check */
    int *noise_positions, n_noise_positions; /* the job's, for prompts without their own */
    int noise_samples;
    uint64_t seed;       /* gaussian noise and resample permutation */
    Direction direction;
    MetricKind metrics[N_METRICS]; /* what each patched run is read as, in the job's order: the metric */
    int n_metrics;                 /* axis of every result (docs/results.md) */
    Site sites[N_SITES];
    int n_sites;
    PositionMode positions;
    int *position_list, n_position_list; /* POS_LIST: each column's position (negative: from the end) */
    char **position_names;                /* POS_LIST: the column's name, or NULL for a number */
    int window;          /* layers patched together */
    int window_center;   /* 0: the node's layer and the w - 1 above it; 1: centred on it, as ROME */
    Site sever;          /* SITE_MLP_OUT or SITE_ATTN_OUT: held at the base run at the patched positions
                          * of every layer (ROME's severed paths); N_SITES: none */
    int estimates[N_ESTIMATES]; /* which estimators to compute (1/0) */
    int exact;           /* run the exact sweep (of nodes and of edges) */
    EdgeFilter edges;    /* which edges to patch (docs/edges.md); edges.on = 0: none */
    int edge_estimates[N_EDGE_ESTIMATES]; /* which edge estimators to compute (1/0) */
    int ig_steps;        /* EAP-IG's steps m (default 5) */
    char *canonical;     /* the job as normalised JSON (prompts inline as token ids, defaults filled in) */
    int had_text;        /* some prompts were given as text */
    int add_bos;         /* text prompts: put the BOS token first (1/0); -1: as the tokenizer's template does */
    char *warnings[4];   /* what job_check found questionable but not wrong, one line each */
    int n_warnings;
    int *resample_from;  /* resample: prompt p's source is prompt resample_from[p] (a seeded derangement) */
    CircuitsSpec *circuits; /* the "circuits" key, or NULL; not part of the canonical job (a circuit run
                             * reads the file the job's run wrote) */
} Job;

/* Column k of a "positions" list in prompt p: the token position (counted from the end when
 * negative, or the prompt's named position), JOB_NO_POSITION when the prompt has none there. */
#define JOB_NO_POSITION 0x7fffffff /* larger than any length, so "pos >= T" reads it as absent */
int job_list_position(const Job *job, int p, int k);
/* The number of position columns (docs/results.md: the S axis) and column j's name as
 * /position_names holds it ("3", "-1", "all", "IO"). */
int job_n_columns(const Job *job);
void job_column_name(const Job *job, int j, char *out, size_t cap);

/* The positions noised in prompt p's gaussian runs. */
static inline const int *job_noise_positions(const Job *job, int p, int *n) {
    const Prompt *pr = &job->prompts[p];
    *n = pr->noise_positions ? pr->n_noise_positions : job->n_noise_positions;
    return pr->noise_positions ? pr->noise_positions : job->noise_positions;
}

/* What the runs of prompt p read (docs/job.md, "Corruptions"): the base run is patched into,
 * the source run patched from. This is the one place that says which is which. */
typedef enum { SOURCE_PROMPT, SOURCE_MEAN, SOURCE_ZERO } SourceKind;
typedef struct {
    const int *base_tokens;
    SourceKind source;
    const int *source_tokens; /* SOURCE_PROMPT only */
    int source_prompt;        /* the prompt source_tokens belong to (resample: another one) */
    int noised;               /* gaussian: 1 when the base run carries the noise (denoise), 2 when the source does */
} PromptRoles;
PromptRoles job_roles(const Job *job, int p);

/* The layers a node of `layer` patches together (the job's window, clipped to the model):
 * first..last. The one place the window rule lives. */
void job_window(const Job *job, int layer, int n_layer, int *first, int *last);

/* rc, and when it is a failure, its message prefixed with the job file and its "model" key (a
 * model folder that is missing or broken is reported as the job's problem it is). */
int job_model_failure(const Job *job, int rc);

/* A warning about the job on this model, or NULL: AtP* asked of a model of two layers or fewer,
 * where GradDrop leaves a layer-0 node whose only path runs through layer 1 with exactly 0. */


int job_parse_file(Job *job, const char *path);
int job_parse_text(Job *job, const char *text, const char *path); /* path names the job in errors */
/* Checks the job against the model it will run on, and turns text prompts into token ids with
 * the model's tokenizer (word level: tokens are whitespace-separated words). */
int job_check(Job *job, const Model *m);
void job_free(Job *job);
/* Fingerprint of what the job computes (not where it reads or writes). */
uint64_t job_fingerprint(const Job *job, uint64_t model_fingerprint);
/* The seeded permutation of n prompts with no fixed point that resample draws (docs/methods.md,
 * "Randomness"); malloc'd. */
int *job_derangement(int n, uint64_t seed);
/* The rows `patchsweep circuit` evaluates (one per explicit or threshold set, one per k), and the
 * forward passes it runs for them on one rank (each rank computes the means it needs itself). */
int circuits_rows(const CircuitsSpec *c);
double circuits_forward_passes(const Job *job);
/* Number of noise draws per prompt: samples for gaussian, else 1. */
static inline int job_samples(const Job *j) { return j->corruption == CORR_GAUSSIAN ? j->noise_samples : 1; }

#endif
