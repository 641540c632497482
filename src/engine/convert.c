/* convert.c - qs_convert: open and validate the checkpoint, plan, create or
 * resume the output, run the pipeline, finish (index, trailer, rename). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateCCtxSize */
#include <zstd.h>
#include <xxhash.h>

#include "config.h"
#include "calib.h"
#include "container.h"
#include "convert.h"
#include "fsafe.h"
#include "parts.h"
#include "pipeline.h"
#include "plan.h"
#include "qshard.h"
#include "safetensors.h"
#include "util.h"

uint64_t qs_default_memory(void)
{
	/* A quarter of physical memory, between 256 MiB and 4 GiB: enough for
	 * full-speed chunks without crowding a shared machine. */
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t phys = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : (1ull << 32);
	uint64_t m = phys / 4;
	if (m < (256ull << 20))
		m = 256ull << 20;
	if (m > (4ull << 30))
		m = 4ull << 30;
	return m;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The records a resumed .partial kept must be the plan's first tensors (of
 * the slice, with --part; scale tensors consumed by their FP8 weight have
 * none).  *next is the plan index the pipeline continues at. */
static int check_kept(const struct qs_plan *plan, const struct qs_part_slice *slice,
		      const struct qs_record *kept, size_t n, const char *partial,
		      size_t *next, struct qs_diag *diag)
{
	size_t at = slice ? slice->tensor_begin : 0;
	size_t end = slice ? slice->tensor_end : plan->ntensors;
	for (size_t i = 0; i < n; i++, at++) {
		while (at < end && plan->tensors[at].consumed)
			at++;
		if (at >= end)
			return qs_diag_set(diag, -QS_EMISMATCH,
					   "'%s': holds more tensors than the checkpoint%s", partial,
					   slice ? "'s part" : "");
		const struct qs_plan_tensor *t = &plan->tensors[at];
		const char *scheme = t->raw ? "raw" : t->scheme.text;
		uint32_t cb = 0, ce = t->nchunks, rf;
		if (slice)
			qs_part_tensor_chunks(slice, plan, at, &cb, &ce, &rf);
		if (strcmp(kept[i].name, t->src->name) != 0 || strcmp(kept[i].scheme, scheme) != 0 ||
		    kept[i].nchunks != ce - cb)
			return qs_diag_set(diag, -QS_EMISMATCH,
					   "'%s': tensor %zu is '%s' (%s), the plan has '%s' (%s)",
					   partial, i, kept[i].name, kept[i].scheme, t->src->name,
					   scheme);
	}
	*next = at;
	return 0;
}

/* -o must name a file: a folder would be found only at the final rename,
 * after the whole conversion (and leave a .partial nothing can finish). */
static int check_output_path(const char *output, struct qs_diag *diag)
{
	size_t n = strlen(output);
	struct stat st;
	char partial[4200];
	snprintf(partial, sizeof(partial), "%s.partial", output);
	if (n == 0 || output[n - 1] == '/' || (stat(output, &st) == 0 && S_ISDIR(st.st_mode)))
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s' is a folder: -o names the output file (e.g. '%s%smodel.qs')",
				   output, output, n && output[n - 1] == '/' ? "" : "/");
	if (lstat(partial, &st) == 0 && S_ISDIR(st.st_mode))
		return qs_diag_set(diag, -QS_EUSAGE, "'%s' is a folder, not a partial output",
				   partial);
	return 0;
}

/* Refuses an output (or its .partial) that is one of the input files, by
 * identity (st_dev/st_ino), so another name or a hard link is caught too:
 * the rename at the end would otherwise replace the checkpoint. */
static int check_not_input(const struct qs_checkpoint *ck, const struct qs_convert_opts *o,
			   struct qs_diag *diag)
{
	char partial[4200];
	snprintf(partial, sizeof(partial), "%s.partial", o->output);
	const char *outs[2] = {o->output, partial};
	for (int k = 0; k < 2; k++) {
		struct stat os;
		if (stat(outs[k], &os) != 0)
			continue;
		const char *hit = NULL;
		for (size_t i = 0; i < ck->nshards && !hit; i++)
			if (ck->shards[i].id.dev == (uint64_t)os.st_dev &&
			    ck->shards[i].id.ino == (uint64_t)os.st_ino)
				hit = ck->shards[i].path;
		const char *extra[4] = {o->importance, o->hessian, NULL, NULL};
		char *cfg = qs_path_join(ck->dir, "config.json");
		char *idx = qs_path_join(ck->dir, "model.safetensors.index.json");
		extra[2] = cfg;
		extra[3] = idx;
		for (int e = 0; e < 4 && !hit; e++) {
			struct stat is;
			if (extra[e] && stat(extra[e], &is) == 0 && is.st_dev == os.st_dev &&
			    is.st_ino == os.st_ino)
				hit = extra[e];
		}
		int rc = 0;
		if (hit)
			rc = qs_diag_set(diag, -QS_EUSAGE,
					 "'%s' is the input file '%s'%s: refusing to overwrite an input",
					 outs[k], hit, strcmp(outs[k], hit) ? " (another name or a hard link)"
									    : "");
		free(cfg);
		free(idx);
		if (rc)
			return rc;
	}
	return 0;
}

static void fill_result(const char *output, struct qs_convert_result *res)
{
	struct qs_qfile *qf;
	struct qs_diag d;
	if (qs_qfile_open(output, &qf, &d) < 0)
		return;
	uint64_t weights = 0, payload = 0, stored = 0;
	for (size_t i = 0; i < qs_qfile_count(qf); i++) {
		struct qs_tensor_info ti;
		qs_qfile_tensor(qf, i, &ti);
		if (strcmp(ti.scheme, "raw") == 0)
			continue;
		uint64_t n = 1;
		for (uint32_t dd = 0; dd < ti.ndim; dd++)
			n *= ti.shape[dd];
		weights += n;
		payload += ti.payload_bytes;
		stored += ti.stored_bytes;
		res->quantized_tensors++;
	}
	res->tensors = qs_qfile_count(qf);
	res->quantized_weights = weights;
	res->output_bytes = qs_qfile_size(qf);
	if (weights) {
		res->bpw_nominal = (double)payload * 8 / (double)weights;
		res->bpw_on_disk = (double)stored * 8 / (double)weights;
	}
	qs_qfile_free(qf);
	/* the trailer, index and header just read (and their read-ahead)
	 * are the only output pages the run brought into the page cache
	 * (the writer drops its own, outbuf.h): drop them too */
	int fd = open(output, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
}

int qs_convert_plan(const struct qs_checkpoint *ck, const struct qs_convert_opts *opts,
		    struct qs_plan *plan, unsigned *threads_out, int *level_out,
		    unsigned *contexts_out, struct qs_diag *diag)
{
	int rc;
	uint64_t memory = opts->memory ? opts->memory : qs_default_memory();
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned threads = opts->threads ? opts->threads : (unsigned)(cpus > 0 ? cpus : 1);
	int level = opts->zstd_level ? opts->zstd_level : QS_ZSTD_LEVEL_DEFAULT;
	if (level < 1 || level > ZSTD_maxCLevel())
		return qs_diag_set(diag, -QS_EUSAGE, "--level must be 1 to %d", ZSTD_maxCLevel());
	/* Chunking follows from --memory alone (plan.h); the compression
	 * contexts get their own fixed share, checked after planning. */
	uint64_t window = qs_memory_chunk_window(memory);
	if (window < (1ull << 20))
		return qs_diag_set(diag, -QS_ENOMEM_WINDOW,
				   "--memory %llu MiB is too small: at least %llu MiB is needed",
				   (unsigned long long)(memory >> 20),
				   (unsigned long long)(qs_memory_for_window(1ull << 20) >> 20) + 1);
	struct qs_convert_opts eff = *opts;
	eff.memory = memory;
	rc = qs_plan_build(ck, &eff, window, plan, diag);
	if (rc < 0)
		return rc;
	/* Static contexts carved from the window (pipeline.c), each sized for
	 * the largest payload: ZSTD_compress2 knows each chunk's size, so no
	 * frame needs more. */
	uint64_t cctx_bytes = qs_pipeline_cctx_stride(level, plan->max_payload);
	uint64_t share = qs_memory_zstd_share(memory);
	uint64_t contexts = cctx_bytes ? share / cctx_bytes : threads;
	if (contexts == 0) {
		qs_plan_release(plan);
		return qs_diag_set(diag, -QS_ENOMEM_WINDOW,
				   "--memory %llu MiB is too small for --level %d: one compression "
				   "context needs %llu MiB and a quarter of --memory is set aside "
				   "for them; raise --memory to %llu MiB or lower --level",
				   (unsigned long long)(memory >> 20), level,
				   (unsigned long long)((cctx_bytes + (1 << 20) - 1) >> 20),
				   /* larger --memory, larger chunks, larger contexts: the
				    * figure is one that fits the largest context the level
				    * ever uses, whatever the chunk size */
				   (unsigned long long)((QS_WINDOW_OVERHEAD +
							 4 * (uint64_t)ZSTD_estimateCCtxSize(level) +
							 (1 << 20) - 1) >> 20));
	}
	if (contexts > threads)
		contexts = threads;
	plan->cctx_bytes = cctx_bytes;
	plan->contexts = (unsigned)contexts;
	*threads_out = threads;
	*level_out = level;
	*contexts_out = (unsigned)contexts;
	return 0;
}

int qs_convert(const struct qs_convert_opts *opts, struct qs_convert_result *res,
	       struct qs_diag *diag)
{
	struct qs_checkpoint *ck = NULL;
	struct qs_plan plan = {0};
	struct qs_cwriter *w = NULL;
	struct qs_record *kept = NULL;
	size_t nkept = 0, first_tensor = 0;
	struct qs_importance *imp = NULL;
	struct qs_hessian *hes = NULL;
	double t0 = now_seconds();
	int rc;
	/* --part K/N: the slice, its file and its header's options text */
	struct qs_part_slice slice;
	char part_path[4096];
	char *part_options = NULL;
	const char *out_path = opts->output;

	memset(res, 0, sizeof(*res));
	if (!opts->input || !opts->output)
		return qs_diag_set(diag, -QS_EUSAGE, "input and output are required");
	rc = check_output_path(opts->output, diag);
	if (rc < 0)
		return rc;
	rc = qs_checkpoint_open(opts->input, &ck, diag);
	if (rc < 0)
		return rc;
	rc = check_not_input(ck, opts, diag);
	if (rc < 0)
		goto out;
	if (ck->ntensors == 0) {
		rc = qs_diag_set(diag, -QS_EFORMAT, "'%s': checkpoint holds no tensors",
				 opts->input);
		goto out;
	}

	if (ck->config_invalid && opts->progress) {
		char notice[4200];
		snprintf(notice, sizeof(notice),
			 "'%s/config.json': not valid JSON, carrying on without it", ck->dir);
		struct qs_progress pr = {.notice = notice};
		opts->progress(&pr, opts->progress_user);
	}

	unsigned threads, contexts;
	int level;
	rc = qs_convert_plan(ck, opts, &plan, &threads, &level, &contexts, diag);
	if (rc < 0)
		goto out;
	if (opts->part_n || opts->part_k) {
		rc = qs_part_slice(&plan, opts->part_k, opts->part_n, &slice);
		if (rc == 0)
			rc = qs_part_path(opts->output, opts->part_k, opts->part_n, part_path,
					  sizeof(part_path));
		if (rc < 0) {
			qs_diag_set(diag, rc, "--part %u/%u: K must be 1 to N, N at most %u",
				    opts->part_k, opts->part_n, QS_PART_MAX);
			goto out;
		}
		part_options = qs_part_id_options(plan.options_text, opts->part_k, opts->part_n);
		if (!part_options) {
			rc = qs_diag_set(diag, -ENOMEM, "out of memory");
			goto out;
		}
		out_path = part_path;
		first_tensor = slice.tensor_begin;
	}
	if (opts->importance && (rc = qs_importance_open(opts->importance, &imp, diag)) < 0)
		goto out;
	if (opts->hessian && (rc = qs_hessian_open(opts->hessian, &hes, diag)) < 0)
		goto out;
	qs_plan_mark_experts(&plan, hes);

	char creator[64];
	snprintf(creator, sizeof(creator), "qshard %s", PACKAGE_VERSION);
	struct qs_header h = {
		.version = QS_FORMAT_VERSION,
		.input_fp = plan.input_fp,
		.options_fp = plan.options_fp,
		.creator = creator,
		.options = plan.options_text,
		.config_json = ck->config_json,
		.metadata_json = ck->nshards ? ck->shards[0].metadata_json : NULL,
		.input = plan.input_text,
	};
	/* the tokenizer and generation settings travel with the weights, so
	 * export needs nothing but the .qshard file */
	struct qs_side_file side[QS_CKPT_SIDE_MAX];
	for (unsigned i = 0; i < ck->nside; i++)
		side[i] = (struct qs_side_file){.name = ck->side_names[i],
						.data = (uint8_t *)ck->side_data[i],
						.len = (uint32_t)ck->side_len[i]};
	h.files = side;
	h.nfiles = ck->nside;
	if (part_options) {
		h.options = part_options;
		h.options_fp = XXH3_64bits(part_options, strlen(part_options));
	}
	bool sync_each = opts->sync == QS_SYNC_TENSOR;
	if (opts->resume) {
		rc = qs_cwriter_resume(out_path, &h, sync_each, &w, &kept, &nkept, diag);
		if (rc == 0) {
			char partial[4200];
			snprintf(partial, sizeof(partial), "%s.partial", out_path);
			rc = check_kept(&plan, part_options ? &slice : NULL, kept, nkept, partial,
					&first_tensor, diag);
		}
	} else {
		rc = qs_cwriter_create(out_path, &h, opts->force, sync_each, &w, diag);
	}
	if (rc < 0)
		goto out;

	/* More chunks in flight than the workers and the read-ahead can use
	 * only cost first-touch page faults and RSS: the ring cycles through
	 * all of its memory.  Output bytes do not depend on this. */
	uint64_t ring_in_use = qs_plan_ring_in_use(&plan, threads);

	struct qs_pipeline_args args = {
		.ckpt = ck,
		.plan = &plan,
		.opts = opts,
		.writer = w,
		.first_tensor = first_tensor,
		.window_bytes = ring_in_use,
		.importance = imp,
		.hessian = hes,
		.threads = threads,
		.contexts = (unsigned)contexts,
		.level = level,
		.slice = part_options ? &slice : NULL,
	};
	struct qs_pipeline_stats stats;
	rc = qs_pipeline_run(&args, &stats, diag);
	res->io_used = stats.io_used;
	res->peak_window_bytes = stats.peak_window;
	res->resumed_tensors = nkept;
	res->input_bytes = stats.bytes_read;
	res->stages = stats.stages;
	if (rc < 0) {
		struct qs_diag ignore;
		qs_cwriter_close_partial(w, &ignore);
		w = NULL;
		if (rc == -QS_EINTERRUPTED)
			qs_diag_set(diag, rc, "'%s.partial': interrupted after a complete tensor",
				    out_path);
		goto out;
	}
	rc = qs_cwriter_finish(w, diag);
	w = NULL;
	if (rc < 0)
		goto out;
	fill_result(out_path, res);
	res->seconds = now_seconds() - t0;
out:
	if (w) {
		struct qs_diag ignore;
		qs_cwriter_close_partial(w, &ignore);
	}
	for (size_t i = 0; i < nkept; i++)
		qs_record_release(&kept[i]);
	free(kept);
	free(part_options);
	qs_plan_release(&plan);
	qs_importance_free(imp);
	qs_hessian_free(hes);
	qs_checkpoint_free(ck);
	return rc;
}
