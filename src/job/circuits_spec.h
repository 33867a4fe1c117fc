/* The job's "circuits" key (docs/circuits.md, "Job key"), private to the job module: parsed with
 * the job (structure, names, choices), checked against the model in job_check (edge and node
 * names, columns, prompt lengths, the mean prompts files as token ids). */
#ifndef PATCHSWEEP_CIRCUITS_SPEC_H
#define PATCHSWEEP_CIRCUITS_SPEC_H

#include <cjson/cJSON.h>
#include "patchsweep/job.h"

/* v: the key's value, NULL when absent (job->circuits stays NULL). dir: where relative paths start. */
int circuits_parse(Job *job, const cJSON *v, const char *where, const char *dir);
int circuits_check(Job *job, const Model *m);
void circuits_free(CircuitsSpec *c);

/* From job.c: a JSONL prompts file (ids or text) into a fresh array; a text prompt's ids; one
 * prompt's canonical JSON; freeing one prompt. */
int job_read_prompts_file(const char *path, Prompt **out, int *n);
int job_resolve_prompt(const Job *job, Prompt *p, const Model *m, const char *where);
cJSON *job_prompt_json(const Prompt *p);
void job_prompt_free(Prompt *p);

#endif
