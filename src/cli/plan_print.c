/* plan_print.c - the plan that convert would run, as a table or (--json)
 * one JSON object on stdout: `qshard convert --plan-only` and `qshard
 * inspect CHECKPOINT`.  Per tensor: the scheme the rules chose, its chunks
 * and rows per chunk, the memory it needs (one chunk's buffers plus the
 * per-tensor state of second-order schemes), its nominal and expected
 * on-disk size and estimated time; then the part's totals: output size,
 * peak memory piece by piece and estimated time.  With --part K/N it lists
 * the slice of part K (the whole plan is part 1 of 1).  Columns belong
 * here, not in cmd_convert.c, so the listing can grow. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static json_t *plan_json(const struct qs_part_plan *pp)
{
	json_t *root = json_object(), *list = json_array();
	if (!root || !list)
		return NULL;
	for (size_t i = 0; i < pp->nentries; i++) {
		const struct qs_part_entry *e = &pp->entries[i];
		json_t *t = json_pack("{s:o, s:s, s:I, s:I, s:I, s:[I,I], s:I, s:I, s:I, s:I, "
				      "s:I, s:b}",
				      "name", cli_json_string(e->name), "scheme", e->scheme, "rows",
				      (json_int_t)e->rows, "cols", (json_int_t)e->cols,
				      "nchunks", (json_int_t)e->nchunks, "chunks",
				      (json_int_t)e->chunk_begin, (json_int_t)e->chunk_end,
				      "row_begin", (json_int_t)e->row_begin, "row_end",
				      (json_int_t)e->row_end, "source_bytes",
				      (json_int_t)e->source_bytes, "hash_bytes",
				      (json_int_t)e->hash_bytes, "cost", (json_int_t)e->cost,
				      "second_order", e->second_order);
		json_t *more = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f}",
					 "rows_per_chunk", (json_int_t)e->rows_per_chunk,
					 "chunk_bytes", (json_int_t)e->chunk_bytes,
					 "scratch_bytes", (json_int_t)e->scratch_bytes,
					 "state_bytes", (json_int_t)e->state_bytes,
					 "hessian_bytes", (json_int_t)e->hessian_bytes,
					 "importance_bytes", (json_int_t)e->importance_bytes,
					 "memory_bytes", (json_int_t)e->memory_bytes,
					 "nominal_bytes", (json_int_t)e->nominal_bytes,
					 "disk_bytes", (json_int_t)e->disk_bytes,
					 "est_core_seconds", e->est_core_seconds);
		if (!t || !more || json_object_update(t, more) != 0 ||
		    json_array_append_new(list, t) != 0)
			return NULL;
		json_decref(more);
	}
	double share = pp->total_cost ? (double)pp->cost / (double)pp->total_cost : 0;
	json_t *more = json_pack("{s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, "
				 "s:I}",
				 "part", (json_int_t)pp->k, "parts", (json_int_t)pp->n, "path",
				 cli_json_string(pp->path), "tensors_total", (json_int_t)pp->tensors_total,
				 "chunks", (json_int_t)pp->chunks, "chunks_total",
				 (json_int_t)pp->chunks_total, "source_bytes",
				 (json_int_t)pp->source_bytes, "hash_bytes",
				 (json_int_t)pp->hash_bytes, "cost", (json_int_t)pp->cost,
				 "total_cost", (json_int_t)pp->total_cost, "share", share,
				 "est_core_seconds", pp->est_core_seconds, "memory",
				 (json_int_t)pp->memory);
	json_t *totals = json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I}, s:f, "
				   "s:f}",
				   "threads", (json_int_t)pp->threads, "contexts",
				   (json_int_t)pp->contexts, "nominal_bytes",
				   (json_int_t)pp->nominal_bytes, "output_bytes",
				   (json_int_t)pp->output_bytes, "peak_bytes",
				   (json_int_t)pp->peak_bytes, "peak", "ring",
				   (json_int_t)pp->peak_ring, "state", (json_int_t)pp->peak_state,
				   "zstd", (json_int_t)pp->peak_zstd, "threads",
				   (json_int_t)pp->peak_threads, "baseline",
				   (json_int_t)pp->peak_baseline, "est_wall_seconds",
				   pp->est_wall_seconds, "sample_seconds", pp->sample_seconds);
	if (!more || !totals || json_object_update(root, more) != 0 ||
	    json_object_update(root, totals) != 0)
		return NULL;
	json_decref(more);
	json_decref(totals);
	json_object_set_new(root, "tensors", list);
	return root;
}

static const char *mib(uint64_t bytes, char buf[32])
{
	snprintf(buf, 32, "%.1f MiB", bytes / 1048576.0);
	return buf;
}

static void print_table(const struct qs_part_plan *pp, const char *title)
{
	char src[32], hashed[32], b1[32], b2[32], b3[32], b4[32], b5[32], b6[32];
	size_t split = 0;
	if (title)
		printf("%s\n", title);
	else
		printf("part %u of %u: '%s'\n", pp->k, pp->n, pp->path);
	printf("%-48s %-28s %-15s %-21s %9s %10s %12s %12s %10s %10s %9s %7s\n", "tensor",
	       "scheme", "chunks", "rows", "rows/chunk", "source", "memory", "state", "nominal",
	       "on disk", "core-s", "cost%");
	for (size_t i = 0; i < pp->nentries; i++) {
		const struct qs_part_entry *e = &pp->entries[i];
		char chunks[48], rows[64];
		snprintf(chunks, sizeof(chunks), "%u-%u/%u", e->chunk_begin, e->chunk_end,
			 e->nchunks);
		snprintf(rows, sizeof(rows), "%llu-%llu/%llu", (unsigned long long)e->row_begin,
			 (unsigned long long)e->row_end, (unsigned long long)e->rows);
		bool piece = e->nchunks && (e->chunk_begin > 0 || e->chunk_end < e->nchunks);
		split += piece;
		printf("%-48s %-28s %-15s %-21s %9llu %10s %12s %12s %10s %10s %9.2f %7.2f%s\n",
		       e->name, e->scheme, chunks, rows, (unsigned long long)e->rows_per_chunk,
		       cli_human(e->source_bytes, src), mib(e->memory_bytes, b1),
		       mib(e->state_bytes, b2), cli_human(e->nominal_bytes, b3),
		       cli_human(e->disk_bytes, b4), e->est_core_seconds,
		       pp->total_cost ? 100.0 * (double)e->cost / (double)pp->total_cost : 0.0,
		       piece ? "  (split)" : "");
	}
	printf("part %u of %u: %zu tensors (%zu split), %llu of %llu chunks, %s source",
	       pp->k, pp->n, pp->nentries, split, (unsigned long long)pp->chunks,
	       (unsigned long long)pp->chunks_total, cli_human(pp->source_bytes, src));
	if (pp->hash_bytes)
		printf(" (+%s read for a split tensor's checksum)", cli_human(pp->hash_bytes, hashed));
	printf(", %.1f%% of the work\n",
	       pp->total_cost ? 100.0 * (double)pp->cost / (double)pp->total_cost : 0.0);
	printf("output: %s (%s nominal payload)\n", cli_human(pp->output_bytes, b1),
	       cli_human(pp->nominal_bytes, b2));
	printf("peak memory: %s = ring %s + scheme state %s + zstd %s (%u context%s) + "
	       "threads %s + process %s\n",
	       mib(pp->peak_bytes, b1), mib(pp->peak_ring, b2), mib(pp->peak_state, b3),
	       mib(pp->peak_zstd, b4), pp->contexts, pp->contexts == 1 ? "" : "s",
	       mib(pp->peak_threads, b5), mib(pp->peak_baseline, b6));
	printf("estimated time: %.1f core-seconds, %.1f s on %u thread%s (kernels sampled "
	       "in %.3f s; disk not counted)\n",
	       pp->est_core_seconds, pp->est_wall_seconds, pp->threads,
	       pp->threads == 1 ? "" : "s", pp->sample_seconds);
}

int cli_plan(const struct qs_convert_opts *opts, const char *title, json_t **json)
{
	struct qs_part_plan *pp;
	struct qs_diag diag = {{0}};
	int rc = qs_part_plan(opts, &pp, &diag);
	if (rc < 0)
		return cli_fail(rc, &diag);
	int ret = QS_EXIT_OK;
	if (json) {
		*json = plan_json(pp);
		if (!*json) {
			cli_error("out of memory");
			ret = QS_EXIT_FAILURE;
		}
	} else {
		print_table(pp, title);
	}
	qs_part_plan_free(pp);
	return ret;
}

int cli_print_plan(const struct qs_convert_opts *opts, bool json)
{
	json_t *j = NULL;
	int ret = cli_plan(opts, NULL, json ? &j : NULL);
	if (ret != QS_EXIT_OK || !j)
		return ret;
	cli_json_print(stdout, j, JSON_COMPACT | JSON_REAL_PRECISION(6));
	return QS_EXIT_OK;
}
