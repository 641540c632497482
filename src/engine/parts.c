/* parts.c - the slice of the plan that convert --part K/N converts, and the
 * listing --plan-only --part K/N prints (qs_part_plan).  See parts.h for
 * the rule; merge.c joins what the parts wrote. */
#include "parts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "config.h"
#include "container.h"
#include "convert.h"
#include "estimate.h"
#include "safetensors.h"
#include "util.h"

typedef unsigned __int128 u128;

bool qs_part_second_order(const struct qs_plan_tensor *t)
{
	return !t->raw && t->scheme.ops && (t->scheme.ops->wants & QS_WANT_HESSIAN);
}

uint64_t qs_part_chunk_cost(const struct qs_plan_tensor *t, uint32_t c)
{
	if (c >= t->nchunks)
		return 0;
	uint64_t rows = qs_plan_chunk_rows(t, c);
	u128 cost = (u128)rows * t->row_bytes * QS_PART_BYTE_COST;
	if (qs_part_second_order(t))
		cost += (u128)rows * t->cols * t->cols * QS_PART_SECOND_ORDER_WEIGHT;
	return cost > UINT64_MAX / 2 ? UINT64_MAX / 2 : (uint64_t)cost;
}

/* A tensor without chunks still needs its record: one unit of no cost.  A
 * scale consumed by its FP8 weight has no record: no unit at all. */
static uint64_t tensor_units(const struct qs_plan_tensor *t)
{
	if (t->consumed)
		return 0;
	return t->nchunks ? t->nchunks : 1;
}

/* The unit index where part k (of n) begins: the unit boundary whose
 * cumulated cost is nearest to k/n of the total (the earlier one on a tie),
 * found by comparing cost x n with k x total so that nothing is rounded. */
static uint64_t boundary(const struct qs_plan *plan, unsigned k, unsigned n, uint64_t units,
			 u128 total)
{
	if (k == 0)
		return 0;
	if (k >= n)
		return units;
	u128 target = total * k;
	u128 before = 0; /* cumulated cost before unit u, times n */
	uint64_t u = 0;
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		uint64_t nu = tensor_units(t);
		for (uint64_t c = 0; c < nu; c++, u++) {
			if (before >= target)
				return u;
			u128 after = before + (u128)qs_part_chunk_cost(t, (uint32_t)c) * n;
			if (after >= target)
				/* the boundary lies in this unit: before or after it */
				return target - before <= after - target ? u : u + 1;
			before = after;
		}
	}
	return units;
}

int qs_part_slice(const struct qs_plan *plan, unsigned k, unsigned n,
		  struct qs_part_slice *s)
{
	memset(s, 0, sizeof(*s));
	if (n < 1 || n > QS_PART_MAX || k < 1 || k > n)
		return -QS_EUSAGE;
	s->k = k;
	s->n = n;
	uint64_t units = 0;
	u128 total = 0;
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		units += tensor_units(t);
		for (uint32_t c = 0; c < t->nchunks; c++)
			total += qs_part_chunk_cost(t, c);
	}
	s->total_cost = total > UINT64_MAX ? UINT64_MAX : (uint64_t)total;
	uint64_t ub = boundary(plan, k - 1, n, units, total);
	uint64_t ue = boundary(plan, k, n, units, total);
	/* units [ub, ue) to tensors and chunks */
	uint64_t start = 0;
	bool begun = false;
	s->tensor_begin = s->tensor_end = plan->ntensors;
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		uint64_t nu = tensor_units(t), end = start + nu;
		if (!begun && ub < end) {
			s->tensor_begin = i;
			s->chunk_begin = (uint32_t)(ub - start);
			begun = true;
		}
		if (begun && ue <= end) {
			if (ue > ub) {
				s->tensor_end = i + 1;
				uint64_t ce = ue - start;
				s->chunk_end = (uint32_t)(ce < t->nchunks ? ce : t->nchunks);
			} else {
				/* an empty part */
				s->tensor_end = s->tensor_begin;
				s->chunk_begin = s->chunk_end = 0;
			}
			break;
		}
		start = end;
	}
	if (!begun)
		s->tensor_begin = s->tensor_end = plan->ntensors;
	for (size_t i = s->tensor_begin; i < s->tensor_end; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		uint32_t cb, ce, rf;
		qs_part_tensor_chunks(s, plan, i, &cb, &ce, &rf);
		for (uint32_t c = rf; c < ce; c++) {
			uint64_t bytes = qs_plan_chunk_rows(t, c) * t->row_bytes;
			if (c < cb) {
				s->hash_bytes += bytes;
				continue;
			}
			s->chunks++;
			s->source_bytes += bytes;
			s->cost += qs_part_chunk_cost(t, c);
		}
	}
	/* reading and hashing without converting: a quarter of a byte's work */
	s->cost += s->hash_bytes * QS_PART_BYTE_COST / 4;
	return 0;
}

void qs_part_tensor_chunks(const struct qs_part_slice *s, const struct qs_plan *plan,
			   size_t ti, uint32_t *begin, uint32_t *end, uint32_t *read_from)
{
	const struct qs_plan_tensor *t = &plan->tensors[ti];
	uint32_t b = ti == s->tensor_begin ? s->chunk_begin : 0;
	uint32_t e = ti + 1 == s->tensor_end ? s->chunk_end : t->nchunks;
	*begin = b;
	*end = e;
	*read_from = e == t->nchunks ? 0 : b;
}

/* ------------------------------------------------------------ listing */

void qs_part_plan_free(struct qs_part_plan *pp)
{
	if (!pp)
		return;
	for (size_t i = 0; i < pp->nentries; i++) {
		free((char *)pp->entries[i].name);
		free((char *)pp->entries[i].scheme);
	}
	free(pp->entries);
	free(pp->path);
	free(pp);
}

/* The frame zstd writes for `payload` bytes that compress to `ratio` of
 * their size: the compressed blocks, a 3-byte header per block of at most
 * 128 KiB, and the frame header; never more than ZSTD_compressBound (what
 * incompressible data costs, stored as raw blocks). */
static uint64_t frame_estimate(uint64_t payload, double ratio)
{
	uint64_t bound = ZSTD_compressBound(payload);
	double est = (double)payload * ratio + 3.0 * (double)((payload >> 17) + 1) + 18.0;
	return est < (double)bound ? (uint64_t)est : bound;
}

/* Sizes of the metadata frames the writer adds (container.c encodes
 * them): one record per entry, the index repeating them, the header and
 * the trailer. */
static int metadata_bytes(const struct qs_checkpoint *ck, const struct qs_plan *plan,
			  const size_t *tensor_of, struct qs_part_plan *pp, uint64_t *records,
			  uint64_t *rest)
{
	struct qs_record *recs = calloc(pp->nentries + 1, sizeof(*recs));
	struct qs_chunk_entry *chunks = NULL;
	uint64_t nch = 0;
	for (size_t i = 0; i < pp->nentries; i++)
		nch += pp->entries[i].chunk_end - pp->entries[i].chunk_begin;
	chunks = calloc(nch + 1, sizeof(*chunks));
	int rc = -ENOMEM;
	if (!recs || !chunks)
		goto out;
	*records = 0;
	uint64_t at = 0;
	for (size_t i = 0; i < pp->nentries; i++) {
		const struct qs_part_entry *e = &pp->entries[i];
		const struct qs_st_tensor *src = plan->tensors[tensor_of[i]].src;
		struct qs_record *r = &recs[i];
		r->name = (char *)e->name;
		r->shard = ck->shards[src->shard].name;
		r->scheme = (char *)e->scheme;
		r->dtype = src->dtype;
		r->ndim = src->ndim;
		memcpy(r->shape, src->shape, sizeof(r->shape));
		r->nchunks = e->chunk_end - e->chunk_begin;
		r->chunks = chunks + at;
		at += r->nchunks;
		uint8_t *buf;
		size_t len;
		if ((rc = qs_record_encode(r, &buf, &len)) < 0)
			goto out;
		free(buf);
		*records += len;
		pp->entries[i].disk_bytes += len;
	}
	uint8_t *buf;
	size_t len;
	if ((rc = qs_index_encode(recs, pp->nentries, &buf, &len)) < 0)
		goto out;
	free(buf);
	char creator[64];
	snprintf(creator, sizeof(creator), "qshard %s", PACKAGE_VERSION);
	struct qs_side_file side[QS_CKPT_SIDE_MAX];
	for (unsigned i = 0; i < ck->nside; i++)
		side[i] = (struct qs_side_file){.name = ck->side_names[i],
						.data = (uint8_t *)ck->side_data[i],
						.len = (uint32_t)ck->side_len[i]};
	struct qs_header h = {
		.version = QS_FORMAT_VERSION,
		.creator = creator,
		.options = plan->options_text,
		.config_json = ck->config_json,
		.metadata_json = ck->nshards ? ck->shards[0].metadata_json : NULL,
		.input = plan->input_text,
		.files = side,
		.nfiles = ck->nside,
	};
	uint8_t *hbuf;
	size_t hlen;
	if ((rc = qs_header_encode(&h, &hbuf, &hlen)) < 0)
		goto out;
	free(hbuf);
	/* a part's header options carry " part=K/N" (part_id.c): a few bytes */
	*rest = len + hlen + QS_TRAILER_FRAME_SIZE + (pp->n > 1 ? 32 : 0);
	rc = 0;
out:
	free(recs);
	free(chunks);
	return rc;
}

int qs_part_plan(const struct qs_convert_opts *opts, struct qs_part_plan **out,
		 struct qs_diag *diag)
{
	*out = NULL;
	if (!opts->input || !opts->output)
		return qs_diag_set(diag, -QS_EUSAGE, "input and output are required");
	unsigned k = opts->part_n ? opts->part_k : 1, n = opts->part_n ? opts->part_n : 1;
	if (n > QS_PART_MAX || k < 1 || k > n)
		return qs_diag_set(diag, -QS_EUSAGE, "--part %u/%u: K must be 1 to N, N at most %u",
				   k, n, QS_PART_MAX);
	struct qs_checkpoint *ck = NULL;
	struct qs_plan plan = {0};
	struct qs_part_plan *pp = NULL;
	struct qs_estimate est = {0};
	uint32_t *chunk_from = NULL, *chunk_end = NULL;
	size_t *tensor_of = NULL;  /* entry -> plan tensor */
	struct qs_hessian *hes = NULL;
	struct qs_importance *imp = NULL;
	unsigned threads, contexts;
	int level;
	int rc = qs_checkpoint_open(opts->input, &ck, diag);
	if (rc < 0)
		return rc;
	rc = qs_convert_plan(ck, opts, &plan, &threads, &level, &contexts, diag);
	if (rc < 0)
		goto out;
	struct qs_part_slice s;
	rc = qs_part_slice(&plan, k, n, &s);
	if (rc < 0)
		goto out;
	pp = calloc(1, sizeof(*pp));
	size_t cap = s.tensor_end - s.tensor_begin;
	char path[4096];
	rc = opts->part_n ? qs_part_path(opts->output, k, n, path, sizeof(path)) : 0;
	if (rc < 0) {
		qs_diag_set(diag, rc, "'%s': output name too long for a part name", opts->output);
		goto out;
	}
	if (!pp || !(pp->entries = calloc(cap ? cap : 1, sizeof(*pp->entries))) ||
	    !(pp->path = strdup(opts->part_n ? path : opts->output))) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	pp->k = k;
	pp->n = n;
	pp->tensors_total = plan.ntensors;
	pp->chunks_total = plan.total_chunks;
	pp->chunks = s.chunks;
	pp->source_bytes = s.source_bytes;
	pp->hash_bytes = s.hash_bytes;
	pp->cost = s.cost;
	pp->total_cost = s.total_cost;
	pp->memory = opts->memory ? opts->memory : qs_default_memory();
	pp->threads = threads;
	pp->contexts = contexts;
	/* the Hessian file's header says which stacked experts have one
	 * Hessian each (prepared per expert: time and ring placement) */
	if (opts->hessian && (rc = qs_hessian_open(opts->hessian, &hes, diag)) < 0)
		goto out;
	qs_plan_mark_experts(&plan, hes);
	/* the statistics files' indexes stay in memory during a run */
	if (opts->importance && (rc = qs_importance_open(opts->importance, &imp, diag)) < 0)
		goto out;
	/* before sampling: the sample's buffers and BLAS are no part of what
	 * a conversion starts from */
	uint64_t baseline = qs_resident_bytes();
	rc = qs_estimate_plan(&plan, threads, level, &est);
	if (rc < 0) {
		qs_diag_set(diag, rc, "out of memory");
		goto out;
	}
	chunk_from = calloc(plan.ntensors + 1, sizeof(*chunk_from));
	chunk_end = calloc(plan.ntensors + 1, sizeof(*chunk_end));
	tensor_of = calloc(plan.ntensors + 1, sizeof(*tensor_of));
	if (!chunk_from || !chunk_end || !tensor_of) {
		rc = qs_diag_set(diag, -ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = s.tensor_begin; i < s.tensor_end; i++) {
		const struct qs_plan_tensor *t = &plan.tensors[i];
		struct qs_part_entry *e = &pp->entries[pp->nentries];
		uint32_t cb, ce, rf;
		if (t->consumed)
			continue;  /* read with its weight, no record of its own */
		qs_part_tensor_chunks(&s, &plan, i, &cb, &ce, &rf);
		chunk_from[i] = rf;
		chunk_end[i] = ce;
		tensor_of[pp->nentries] = i;
		e->name = strdup(t->src->name);
		e->scheme = strdup(t->raw ? "raw" : t->scheme.text);
		pp->nentries++;
		if (!e->name || !e->scheme) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		e->rows = t->rows;
		e->cols = t->cols;
		e->nchunks = t->nchunks;
		e->chunk_begin = cb;
		e->chunk_end = ce;
		e->row_begin = qs_plan_chunk_begin(t, cb);
		e->row_end = ce == t->nchunks ? t->rows : qs_plan_chunk_begin(t, ce);
		if (t->nchunks == 0)
			e->row_begin = e->row_end = 0;
		e->second_order = qs_part_second_order(t);
		for (uint32_t c = rf; c < ce; c++) {
			uint64_t rows = qs_plan_chunk_rows(t, c);
			uint64_t bytes = rows * t->row_bytes;
			if (c < cb) {
				e->hash_bytes += bytes;
				continue;
			}
			e->source_bytes += bytes;
			e->cost += qs_part_chunk_cost(t, c);
			uint64_t payload = t->raw ? bytes
						  : t->scheme.ops->payload_size(&t->scheme, rows,
										t->cols);
			e->nominal_bytes += payload;
			e->disk_bytes += frame_estimate(payload, est.tensor_zstd_ratio[i]);
		}
		e->rows_per_chunk = t->rows_per_chunk;
		if (t->nchunks) {
			struct qs_chunk_footprint fp;
			qs_plan_footprint(t, t->rows_per_chunk, &fp);
			e->chunk_bytes = fp.total;
			e->scratch_bytes = fp.scratch;
		}
		e->state_bytes = t->prep_total;
		e->hessian_bytes = t->prep_hessian;
		e->importance_bytes = t->prep_importance;
		e->memory_bytes = e->chunk_bytes + e->state_bytes;
		/* this part's share of the tensor's estimated time */
		e->est_core_seconds = est.tensor_core_seconds[i];
		if (t->nchunks)
			e->est_core_seconds *= (double)(ce - cb) / (double)t->nchunks;
		pp->est_core_seconds += e->est_core_seconds;
		pp->nominal_bytes += e->nominal_bytes;
		pp->output_bytes += e->disk_bytes;
	}
	pp->sample_seconds = est.sample_seconds;
	uint64_t records = 0, rest = 0;
	rc = metadata_bytes(ck, &plan, tensor_of, pp, &records, &rest);
	if (rc < 0) {
		qs_diag_set(diag, rc, "out of memory");
		goto out;
	}
	pp->output_bytes += records + rest;
	struct qs_plan_memory pm;
	qs_plan_memory(&plan, threads, chunk_from, chunk_end, baseline + est.code_bytes,
		       est.reader_bytes, est.worker_bytes, &pm);
	pp->peak_bytes = pm.total;
	pp->peak_ring = pm.ring;
	pp->peak_state = pm.state;
	pp->peak_zstd = pm.zstd;
	pp->peak_threads = pm.threads;
	pp->peak_baseline = pm.baseline;
	pp->est_wall_seconds = pp->est_core_seconds / (threads ? threads : 1);
	*out = pp;
	pp = NULL;
out:
	free(chunk_from);
	free(chunk_end);
	free(tensor_of);
	qs_hessian_free(hes);
	qs_importance_free(imp);
	qs_estimate_release(&est);
	qs_part_plan_free(pp);
	qs_plan_release(&plan);
	qs_checkpoint_free(ck);
	return rc;
}
