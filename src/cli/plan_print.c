/* plan_print.c - `qshard convert --plan-only`: prints the plan that convert
 * would run, as a table or (--json) one JSON object on stdout.  Today it
 * lists the slice of one part (--part K/N; the whole plan is part 1 of 1):
 * which tensors and chunks it holds and its estimated cost.  Columns
 * belong here, not in cmd_convert.c, so the listing can grow. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static int print_json(const struct qs_part_plan *pp)
{
	json_t *root = json_object(), *list = json_array();
	if (!root || !list)
		return -1;
	for (size_t i = 0; i < pp->nentries; i++) {
		const struct qs_part_entry *e = &pp->entries[i];
		json_t *t = json_pack("{s:s, s:s, s:I, s:I, s:I, s:[I,I], s:I, s:I, s:I, s:I, "
				      "s:I, s:b}",
				      "name", e->name, "scheme", e->scheme, "rows",
				      (json_int_t)e->rows, "cols", (json_int_t)e->cols,
				      "nchunks", (json_int_t)e->nchunks, "chunks",
				      (json_int_t)e->chunk_begin, (json_int_t)e->chunk_end,
				      "row_begin", (json_int_t)e->row_begin, "row_end",
				      (json_int_t)e->row_end, "source_bytes",
				      (json_int_t)e->source_bytes, "hash_bytes",
				      (json_int_t)e->hash_bytes, "cost", (json_int_t)e->cost,
				      "second_order", e->second_order);
		if (!t || json_array_append_new(list, t) != 0)
			return -1;
	}
	double share = pp->total_cost ? (double)pp->cost / (double)pp->total_cost : 0;
	json_t *more = json_pack("{s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, "
				 "s:I}",
				 "part", (json_int_t)pp->k, "parts", (json_int_t)pp->n, "path",
				 pp->path, "tensors_total", (json_int_t)pp->tensors_total,
				 "chunks", (json_int_t)pp->chunks, "chunks_total",
				 (json_int_t)pp->chunks_total, "source_bytes",
				 (json_int_t)pp->source_bytes, "hash_bytes",
				 (json_int_t)pp->hash_bytes, "cost", (json_int_t)pp->cost,
				 "total_cost", (json_int_t)pp->total_cost, "share", share,
				 "est_core_seconds", pp->est_core_seconds, "memory",
				 (json_int_t)pp->memory);
	if (!more || json_object_update(root, more) != 0)
		return -1;
	json_decref(more);
	json_object_set_new(root, "tensors", list);
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		return -1;
	puts(text);
	free(text);
	return 0;
}

static void print_table(const struct qs_part_plan *pp)
{
	char src[32], hashed[32];
	size_t split = 0;
	printf("part %u of %u: '%s'\n", pp->k, pp->n, pp->path);
	printf("%-48s %-28s %-15s %-21s %10s %8s\n", "tensor", "scheme", "chunks", "rows",
	       "source", "cost%");
	for (size_t i = 0; i < pp->nentries; i++) {
		const struct qs_part_entry *e = &pp->entries[i];
		char chunks[48], rows[64];
		snprintf(chunks, sizeof(chunks), "%u-%u/%u", e->chunk_begin, e->chunk_end,
			 e->nchunks);
		snprintf(rows, sizeof(rows), "%llu-%llu/%llu", (unsigned long long)e->row_begin,
			 (unsigned long long)e->row_end, (unsigned long long)e->rows);
		bool piece = e->nchunks && (e->chunk_begin > 0 || e->chunk_end < e->nchunks);
		split += piece;
		printf("%-48s %-28s %-15s %-21s %10s %7.2f%s\n", e->name, e->scheme, chunks, rows,
		       cli_human(e->source_bytes, src),
		       pp->total_cost ? 100.0 * (double)e->cost / (double)pp->total_cost : 0.0,
		       piece ? "  (split)" : "");
	}
	printf("part %u of %u: %zu tensors (%zu split), %llu of %llu chunks, %s source",
	       pp->k, pp->n, pp->nentries, split, (unsigned long long)pp->chunks,
	       (unsigned long long)pp->chunks_total, cli_human(pp->source_bytes, src));
	if (pp->hash_bytes)
		printf(" (+%s read for a split tensor's checksum)", cli_human(pp->hash_bytes, hashed));
	printf(", %.1f%% of the work, about %.1f core-seconds\n",
	       pp->total_cost ? 100.0 * (double)pp->cost / (double)pp->total_cost : 0.0,
	       pp->est_core_seconds);
}

int cli_print_plan(const struct qs_convert_opts *opts, bool json)
{
	struct qs_part_plan *pp;
	struct qs_diag diag = {{0}};
	int rc = qs_part_plan(opts, &pp, &diag);
	if (rc < 0)
		return cli_fail(rc, &diag);
	int ret = QS_EXIT_OK;
	if (json) {
		if (print_json(pp) < 0) {
			cli_error("out of memory");
			ret = QS_EXIT_FAILURE;
		}
	} else {
		print_table(pp);
	}
	qs_part_plan_free(pp);
	return ret;
}
