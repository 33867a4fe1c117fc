/* The job's "edges" key (docs/edges.md, "Job keys"), private to the job module: parsed into an
 * EdgeFilter, and written back into the canonical job. */
#ifndef PATCHSWEEP_EDGE_FILTER_H
#define PATCHSWEEP_EDGE_FILTER_H

#include <cjson/cJSON.h>
#include "patchsweep/job.h"

/* v: the key's value ("all" or a filter object), NULL when absent (filter off). */
int edge_filter_parse(EdgeFilter *f, const cJSON *v, const char *where);
/* Adds "edges" to the canonical job o when the filter is on. */
void edge_filter_json(const EdgeFilter *f, cJSON *o);

#endif
