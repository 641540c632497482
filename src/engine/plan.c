/* plan.c - deciding, before reading any tensor data, what happens to every
 * tensor: scheme or raw, row view, row-chunks, and the fingerprints that
 * let --resume refuse a changed input or changed options. */
#include "plan.h"
#include "preset.h"

#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>
#include <zstd.h>

#include "util.h"

/* Source bytes a chunk aims at.  Large enough that per-frame overhead and
 * per-chunk synchronisation vanish, small enough that several chunks are in
 * flight per worker.  Derived from --memory only (never from -T), so the
 * output bytes do not depend on the thread count. */
#define QS_CHUNK_SOURCE_MAX (16ull << 20)
#define QS_CHUNK_SOURCE_MIN (64ull << 10)

/* MoE routers (the gate that scores experts): DeepSeek and Qwen-MoE
 * "mlp.gate.weight", Mixtral "block_sparse_moe.gate.weight", gpt-oss
 * "mlp.router.weight".  A router error changes which experts run, so
 * routers stay at source precision unless a --scheme rule names them. */
bool qs_is_moe_router(const char *name)
{
	static const char *const tails[] = {".mlp.gate.weight", ".block_sparse_moe.gate.weight",
					    ".mlp.router.weight"};
	size_t n = strlen(name);
	for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
		size_t m = strlen(tails[i]);
		if (n >= m && strcmp(name + n - m, tails[i]) == 0)
			return true;
	}
	return false;
}

struct scheme_rule {
	bool has_regex;
	regex_t re;
	struct qs_scheme scheme;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Companion bytes for a chunk of `rows` rows.  Chunks of a block-scaled
 * tensor start on block rows (cut_chunks), so they need ceil(rows / br)
 * rows of the scale. */
static uint64_t aux_bytes(const struct qs_plan_tensor *t, uint64_t rows)
{
	const struct qs_st_tensor *s = t->companion;
	if (t->pairing.enc == QS_SRC_MXFP4)
		return rows * (t->cols / QS_MXFP4_BLOCK);  /* one E8M0 byte a block */
	if (t->pairing.enc != QS_SRC_FP8_BLOCK)
		return s->nbytes;
	uint64_t br = t->pairing.block_rows;
	return (rows + br - 1) / br * s->shape[1] * qs_dtype_size(s->dtype);
}

void qs_plan_footprint(const struct qs_plan_tensor *t, uint64_t rows,
		       struct qs_chunk_footprint *fp)
{
	memset(fp, 0, sizeof(*fp));
	/* O_DIRECT reads whole aligned blocks: up to one block of slack on
	 * each side of the wanted range. */
	fp->input = align_up(rows * t->row_bytes, QS_BUF_ALIGN) + 2 * QS_BUF_ALIGN;
	uint64_t payload_bytes;
	if (t->raw) {
		payload_bytes = rows * t->row_bytes;
	} else {
		fp->work = align_up(rows * t->cols * sizeof(float), QS_BUF_ALIGN);
		payload_bytes = t->scheme.ops->payload_size(&t->scheme, rows, t->cols);
		fp->payload = align_up(payload_bytes, QS_BUF_ALIGN);
		fp->scratch = align_up(t->scheme.ops->scratch_size(&t->scheme, rows, t->cols),
				       QS_BUF_ALIGN);
	}
	if (t->companion)
		fp->aux = align_up(aux_bytes(t, rows), QS_BUF_ALIGN) + 2 * QS_BUF_ALIGN;
	fp->compressed = align_up(ZSTD_compressBound(payload_bytes), QS_BUF_ALIGN);
	fp->total = fp->input + fp->aux + fp->work + fp->payload + fp->compressed + fp->scratch;
}

/* The tensor's preparation is not run: it has none, or it would only
 * digest statistics the tensor does not load. */
static bool prep_skipped(const struct qs_plan_tensor *t)
{
	return !t->prep_total || (!t->scheme.stats && t->scheme.ops->prep_for_stats_only);
}

bool qs_plan_one_pass(const struct qs_plan_tensor *t)
{
	return !t->raw && !t->companion && t->scheme.ops->quantize_src && prep_skipped(t);
}

bool qs_plan_needs_prep(const struct qs_plan_tensor *t)
{
	return !prep_skipped(t);
}

void qs_plan_chunk_buffers(const struct qs_plan_tensor *t, uint64_t rows,
			   struct qs_chunk_footprint *fp)
{
	qs_plan_footprint(t, rows, fp);
	if (qs_plan_one_pass(t)) {
		/* the one-pass kernels decode a group (rtn, on its stack) or
		 * a row (adpq, which reads it several times) at a time: no f32
		 * copy of the chunk is ever made */
		uint64_t row = align_up(t->cols * sizeof(float), QS_BUF_ALIGN);
		if (row < fp->work) {
			fp->total -= fp->work - row;
			fp->work = row;
		}
	}
}

void qs_plan_chunk_aux(const struct qs_plan_tensor *t, uint32_t c, uint64_t *offset,
		       uint64_t *len)
{
	const struct qs_st_tensor *s = t->companion;
	if (t->pairing.enc == QS_SRC_MXFP4) {
		*offset = s->offset + qs_plan_chunk_begin(t, c) * (t->cols / QS_MXFP4_BLOCK);
		*len = aux_bytes(t, qs_plan_chunk_rows(t, c));
		return;
	}
	if (t->pairing.enc != QS_SRC_FP8_BLOCK) {
		*offset = s->offset;
		*len = s->nbytes;
		return;
	}
	uint64_t br = t->pairing.block_rows;
	uint64_t scale_row_bytes = s->shape[1] * qs_dtype_size(s->dtype);
	*offset = s->offset + qs_plan_chunk_begin(t, c) / br * scale_row_bytes;
	*len = aux_bytes(t, qs_plan_chunk_rows(t, c));
}

/* Splits "[REGEX=]NAME[:k=v,...]": the regex is whatever precedes the last
 * '=' before the first ':' (parameters contain '=' too). */
static int parse_rule(const char *spec, struct scheme_rule *rule, struct qs_diag *diag)
{
	memset(rule, 0, sizeof(*rule));
	const char *colon = strchr(spec, ':');
	size_t head = colon ? (size_t)(colon - spec) : strlen(spec);
	const char *eq = NULL;
	for (size_t i = 0; i < head; i++)
		if (spec[i] == '=')
			eq = spec + i;
	const char *scheme_text = spec;
	if (eq) {
		size_t rlen = (size_t)(eq - spec);
		char *regex = strndup(spec, rlen);
		if (!regex)
			return -ENOMEM;
		int rc = rlen ? regcomp(&rule->re, regex, REG_EXTENDED | REG_NOSUB) : 1;
		free(regex);
		if (rc != 0)
			return qs_diag_set(diag, -QS_EUSAGE,
					   "--scheme '%s': invalid regular expression", spec);
		rule->has_regex = true;
		scheme_text = eq + 1;
	}
	int rc = qs_scheme_parse(scheme_text, &rule->scheme, diag);
	if (rc < 0 && rule->has_regex)
		regfree(&rule->re);
	return rc;
}

static void append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t n = strlen(s);
	if (!*buf)
		return;
	if (*len + n + 1 > *cap) {
		size_t ncap = (*cap + n + 1) * 2;
		char *nb = realloc(*buf, ncap);
		if (!nb) {
			free(*buf);
			*buf = NULL;
			return;
		}
		*buf = nb;
		*cap = ncap;
	}
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

/* The canonical options text: everything that changes output bytes. */
static char *options_text(const struct qs_convert_opts *opts, uint64_t chunk_target,
			  uint64_t chunking_fp, int level)
{
	size_t len = 0, cap = 256;
	char *buf = malloc(cap);
	char num[96];
	if (!buf)
		return NULL;
	buf[0] = '\0';
	append(&buf, &len, &cap, "format=1");
	for (size_t i = 0; i < opts->nschemes; i++) {
		append(&buf, &len, &cap, " --scheme ");
		append(&buf, &len, &cap, opts->schemes[i]);
	}
	if (opts->scheme_preset) {
		append(&buf, &len, &cap, " --scheme-preset ");
		append(&buf, &len, &cap, opts->scheme_preset);
	}
	for (size_t i = 0; i < opts->nkeeps; i++) {
		append(&buf, &len, &cap, " --keep ");
		append(&buf, &len, &cap, opts->keeps[i]);
	}
	/* statistics files by path, size and modification time: a changed
	 * file changes what calibration-aware schemes write */
	const char *stats[2][2] = {{" --importance ", opts->importance},
				   {" --hessian ", opts->hessian}};
	for (int i = 0; i < 2; i++) {
		struct stat st;
		if (!stats[i][1])
			continue;
		append(&buf, &len, &cap, stats[i][0]);
		append(&buf, &len, &cap, stats[i][1]);
		if (stat(stats[i][1], &st) == 0) {
			snprintf(num, sizeof(num), "@%lld:%lld", (long long)st.st_size,
				 (long long)st.st_mtim.tv_sec * 1000000000ll + st.st_mtim.tv_nsec);
			append(&buf, &len, &cap, num);
		}
	}
	/* --allow-nonfinite is left out on purpose: tensors written before a
	 * refused NaN are the same either way, so a run stopped by one can
	 * be resumed with the flag. */
	snprintf(num, sizeof(num), " level=%d chunk=%llu chunking=%016llx", level,
		 (unsigned long long)chunk_target, (unsigned long long)chunking_fp);
	append(&buf, &len, &cap, num);
	return buf;
}

/* The canonical description of the input, one line per shard and per
 * tensor: what --resume compares.  It is stored in the header so a refused
 * resume can name the line that changed. */
static char *input_text(const struct qs_checkpoint *ck)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	char line[1024];
	if (!buf)
		return NULL;
	buf[0] = '\0';
	for (size_t i = 0; i < ck->nshards; i++) {
		const struct qs_st_shard *s = &ck->shards[i];
		snprintf(line, sizeof(line), "shard '%s' size %llu mtime %lld\n", s->name,
			 (unsigned long long)s->size, (long long)s->mtime_ns);
		append(&buf, &len, &cap, line);
	}
	for (size_t i = 0; i < ck->ntensors; i++) {
		const struct qs_st_tensor *t = &ck->tensors[i];
		int at = snprintf(line, sizeof(line), "tensor '%s' %s [", t->name,
				  qs_dtype_name(t->dtype));
		for (uint32_t d = 0; d < t->ndim && at < (int)sizeof(line); d++)
			at += snprintf(line + at, sizeof(line) - (size_t)at, "%s%llu", d ? "," : "",
				       (unsigned long long)t->shape[d]);
		if (at < (int)sizeof(line))
			snprintf(line + at, sizeof(line) - (size_t)at, "] in '%s'\n",
				 ck->shards[t->shard].name);
		append(&buf, &len, &cap, line);
	}
	return buf;
}

/* Chooses rows per chunk: as many as reach the source target while the
 * footprint stays within a quarter of --memory (so several chunks are in
 * flight); never fewer than one row, which must fit the ring. */
static int cut_chunks(struct qs_plan_tensor *pt, uint64_t chunk_target,
		      uint64_t memory, uint64_t window, uint64_t set_aside, const char *file,
		      struct qs_diag *diag)
{
	if (pt->rows == 0 || pt->cols == 0) {
		pt->rows_per_chunk = 0;
		pt->nchunks = 0;
		return 0;
	}
	/* block-scaled FP8: chunks hold whole block rows, so each reads its
	 * own rows of the scale */
	uint64_t unit = pt->pairing.enc == QS_SRC_FP8_BLOCK ? pt->pairing.block_rows : 1;
	if (unit > pt->matrix_rows)
		unit = pt->matrix_rows;
	struct qs_chunk_footprint fp;
	qs_plan_footprint(pt, unit, &fp);
	if (fp.total > window) {
		char what[64] = "one row";
		if (unit > 1)
			snprintf(what, sizeof(what), "one block row of %llu rows",
				 (unsigned long long)unit);
		return qs_diag_set(diag, -QS_ENOMEM_WINDOW,
				   "'%s': tensor '%s' needs --memory of at least %llu MiB "
				   "for %s (the window for chunks is %llu MiB); raise --memory",
				   file, pt->src->name,
				   (unsigned long long)((qs_memory_for_window(fp.total + set_aside) +
							 (1 << 20) - 1) >> 20),
				   what, (unsigned long long)(window >> 20));
	}
	if (!pt->raw && pt->scheme.ops->whole_tensor) {
		/* one chunk per matrix (a stacked-experts tensor has several) */
		qs_plan_footprint(pt, pt->matrix_rows, &fp);
		if (fp.total > window)
			return qs_diag_set(diag, -QS_ENOMEM_WINDOW,
					   "'%s': tensor '%s': %s quantizes all %llu rows of a "
					   "matrix at once and needs --memory of at least %llu MiB "
					   "(the window for chunks is %llu MiB); raise --memory",
					   file, pt->src->name, pt->scheme.text,
					   (unsigned long long)pt->matrix_rows,
					   (unsigned long long)((qs_memory_for_window(fp.total + set_aside) +
								 (1 << 20) - 1) >> 20),
					   (unsigned long long)(window >> 20));
		pt->rows_per_chunk = pt->matrix_rows;
		pt->nchunks = (uint32_t)(pt->rows / pt->matrix_rows);
		return 0;
	}
	uint64_t rows = chunk_target / (pt->row_bytes ? pt->row_bytes : 1);
	if (rows < unit)
		rows = unit;
	if (rows > pt->matrix_rows)
		rows = pt->matrix_rows;
	rows = rows / unit * unit;
	/* the footprint grows linearly with rows: shrink to the cap */
	uint64_t cap = memory / 4;
	while (rows > unit) {
		qs_plan_footprint(pt, rows, &fp);
		if (fp.total <= cap && fp.total <= window)
			break;
		rows = rows * 3 / 4 / unit * unit;
		if (rows < unit)
			rows = unit;
	}
	pt->rows_per_chunk = rows;
	uint64_t n = (pt->matrix_rows + rows - 1) / rows * (pt->rows / pt->matrix_rows);
	if (n > UINT32_MAX)
		return qs_diag_set(diag, -QS_ETOOBIG, "'%s': tensor '%s' has too many chunks",
				   file, pt->src->name);
	pt->nchunks = (uint32_t)n;
	return 0;
}

/* Sizes the per-tensor state of a calibration-aware scheme; fails, before
 * anything is read, when it cannot fit the window beside one row. */
static int size_prep(struct qs_plan_tensor *pt, const struct qs_convert_opts *opts,
		     const char *file, uint64_t window, struct qs_diag *diag)
{
	const struct qs_scheme_ops *ops = pt->scheme.ops;
	if (pt->raw || !ops->prepare || pt->rows == 0 || pt->cols == 0)
		return 0;
	uint64_t cols = pt->cols, hbytes = 0, total;
	pt->scheme.stats = ((ops->wants & QS_WANT_IMPORTANCE) && opts->importance ? QS_WANT_IMPORTANCE : 0) |
			   ((ops->wants & QS_WANT_HESSIAN) && opts->hessian ? QS_WANT_HESSIAN : 0);
	pt->prep_state = (ops->prep_size(&pt->scheme, cols) + QS_BUF_ALIGN - 1) / QS_BUF_ALIGN *
			 QS_BUF_ALIGN;
	if ((ops->wants & QS_WANT_IMPORTANCE) && opts->importance)
		pt->prep_importance = cols * sizeof(float);
	if ((ops->wants & QS_WANT_HESSIAN) && opts->hessian &&
	    (!qs_mul_u64(cols, cols, &hbytes) || !qs_mul_u64(hbytes, sizeof(float), &hbytes)))
		return qs_diag_set(diag, -QS_ETOOBIG, "'%s': tensor '%s': Hessian too large",
				   file, pt->src->name);
	pt->prep_hessian = hbytes;
	total = pt->prep_state + pt->prep_importance + pt->prep_hessian;
	pt->prep_total = total;
	struct qs_chunk_footprint fp;
	qs_plan_footprint(pt, 1, &fp);
	if (total + fp.total > window) {
		uint64_t memory = opts->memory ? opts->memory : qs_default_memory();
		uint64_t need = qs_memory_for_window(total + fp.total);
		return qs_diag_set(diag, -QS_ENOMEM_WINDOW,
				   "'%s': tensor '%s': %s needs a memory window of at least "
				   "%llu MiB (%llu MiB of per-tensor state); --memory is %llu MiB",
				   file, pt->src->name, pt->scheme.text,
				   (unsigned long long)((need + (1 << 20) - 1) >> 20),
				   (unsigned long long)(total >> 20),
				   (unsigned long long)(memory >> 20));
	}
	return 0;
}

int qs_plan_build(const struct qs_checkpoint *ck, const struct qs_convert_opts *opts,
		  uint64_t window, struct qs_plan *plan, struct qs_diag *diag)
{
	memset(plan, 0, sizeof(*plan));
	int rc = 0;
	uint64_t memory = opts->memory ? opts->memory : qs_default_memory();
	int level = opts->zstd_level ? opts->zstd_level : QS_ZSTD_LEVEL_DEFAULT;
	struct scheme_rule *rules = NULL;
	struct qs_src_pairing *pairing = NULL;
	regex_t *keeps = NULL;
	size_t nrules = 0, nkeeps = 0;

	uint64_t target = memory / 32;
	if (target > QS_CHUNK_SOURCE_MAX)
		target = QS_CHUNK_SOURCE_MAX;
	if (target < QS_CHUNK_SOURCE_MIN)
		target = QS_CHUNK_SOURCE_MIN;
	plan->chunk_source_target = target;

	rules = calloc(opts->nschemes + 1, sizeof(*rules));
	keeps = calloc(opts->nkeeps + 1, sizeof(*keeps));
	plan->tensors = calloc(ck->ntensors + 1, sizeof(*plan->tensors));
	if (!rules || !keeps || !plan->tensors) {
		rc = -ENOMEM;
		goto out;
	}
	/* The default scheme is rtn with its defaults unless a rule without a
	 * regex says otherwise. */
	rc = parse_rule("rtn", &rules[nrules++], diag);
	if (rc < 0)
		goto out;
	for (size_t i = 0; i < opts->nschemes; i++) {
		rc = parse_rule(opts->schemes[i], &rules[nrules], diag);
		if (rc < 0)
			goto out;
		nrules++;
	}
	struct qs_preset preset;
	bool have_preset = opts->scheme_preset != NULL;
	if (have_preset) {
		int kind = qs_preset_find(opts->scheme_preset);
		if (kind < 0) {
			rc = qs_diag_set(diag, -QS_EUSAGE, "unknown --scheme-preset '%s' (known: %s)",
					 opts->scheme_preset, QS_PRESET_NAMES);
			goto out;
		}
		qs_preset_init(&preset, (enum qs_preset_kind)kind, ck);
	}
	for (size_t i = 0; i < opts->nkeeps; i++) {
		if (regcomp(&keeps[i], opts->keeps[i], REG_EXTENDED | REG_NOSUB) != 0) {
			rc = qs_diag_set(diag, -QS_EUSAGE,
					 "--keep '%s': invalid regular expression", opts->keeps[i]);
			goto out;
		}
		nkeeps++;
	}

	pairing = calloc(ck->ntensors + 1, sizeof(*pairing));
	if (!pairing) {
		rc = -ENOMEM;
		goto out;
	}
	rc = qs_src_pair_scales(ck, pairing, diag);
	if (rc < 0)
		goto out;
	plan->logical = calloc(ck->ntensors + 1, sizeof(*plan->logical));
	if (!plan->logical) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < ck->ntensors; i++) {
		const struct qs_st_tensor *t = &ck->tensors[i];
		struct qs_plan_tensor *pt = &plan->tensors[i];
		const char *blocks_name = NULL;
		if (pairing[i].enc == QS_SRC_MXFP4) {
			/* planned as the logical tensor "P"; kept, as "P_blocks" */
			struct qs_st_tensor *l = &plan->logical[plan->nlogical];
			*l = qs_mxfp4_logical(t);
			if (!l->name) {
				rc = -ENOMEM;
				goto out;
			}
			plan->nlogical++;
			blocks_name = t->name;
			t = l;
		}
		pt->src = t;
		pt->pairing = pairing[i];
		pt->cols = t->ndim ? t->shape[t->ndim - 1] : 1;
		pt->rows = 1;
		for (uint32_t d = 0; d + 1 < t->ndim; d++)
			pt->rows *= t->shape[d];  /* cannot overflow: nbytes was checked */
		if (t->ndim >= 1 && t->shape[t->ndim - 1] == 0)
			pt->rows = 0;
		pt->matrix_rows = t->ndim >= 3 ? t->shape[t->ndim - 2] : pt->rows;
		pt->row_bytes = blocks_name ? pt->cols / QS_MXFP4_BLOCK * 16
					    : pt->cols * qs_dtype_size(t->dtype);

		bool paired = pairing[i].companion != SIZE_MAX;
		bool keep = !(qs_dtype_quantizable(t->dtype) || paired) || t->ndim < 2 ||
			    pairing[i].scale_of != SIZE_MAX;
		for (size_t k = 0; k < nkeeps && !keep; k++)
			keep = regexec(&keeps[k], t->name, 0, NULL, 0) == 0 ||
			       (blocks_name && regexec(&keeps[k], blocks_name, 0, NULL, 0) == 0);
		if (!keep) {
			size_t r = nrules;
			while (r-- > 0)
				if (!rules[r].has_regex ||
				    regexec(&rules[r].re, t->name, 0, NULL, 0) == 0)
					break;
			pt->scheme = rules[r].scheme;
			/* a MoE router decides which experts run: kept unless a
			 * rule names it */
			if (!rules[r].has_regex && qs_is_moe_router(t->name))
				keep = true;
			/* rule 0 is the default: the preset's choice replaces it */
			if (!keep && r == 0 && have_preset) {
				char text[QS_SCHEME_TEXT_MAX];
				if (qs_preset_choose(&preset, t, text, sizeof(text)) == 1) {
					keep = true;
				} else {
					rc = qs_scheme_parse(text, &pt->scheme, diag);
					if (rc < 0)
						goto out;
				}
			}
		}
		pt->raw = keep;
		if (keep && blocks_name) {
			/* stored as the source holds it */
			pt->src = &ck->tensors[i];
			pt->cols = 16;
			pt->rows = t->shape[0] ? pt->src->nbytes / 16 : 0;
			pt->matrix_rows = pt->rows;
			pt->row_bytes = 16;
			pt->pairing = (struct qs_src_pairing){.companion = SIZE_MAX,
							      .scale_of = SIZE_MAX};
		}
		if (!pt->raw && pt->rows && pt->cols &&
		    pt->scheme.ops->payload_size(&pt->scheme, 1, pt->cols) == UINT64_MAX) {
			rc = qs_diag_set(diag, -QS_EUSAGE,
					 "'%s': tensor '%s': %s cannot quantize rows of %llu columns "
					 "(gguf types need a multiple of their block, 32 or 256; "
					 "--keep it or choose another scheme for it)",
					 ck->shards[pt->src->shard].name, t->name, pt->scheme.text,
					 (unsigned long long)pt->cols);
			goto out;
		}
	}
	/* A quantized FP8 weight reads its scale and consumes it; a kept one
	 * keeps its scale beside it, both byte for byte. */
	for (size_t i = 0; i < ck->ntensors; i++) {
		size_t s = pairing[i].companion;
		if (s == SIZE_MAX || plan->tensors[i].raw)
			continue;
		plan->tensors[i].companion = &ck->tensors[s];
		plan->tensors[s].consumed = true;
	}
	for (size_t i = 0; i < ck->ntensors; i++) {
		struct qs_plan_tensor *pt = &plan->tensors[i];
		rc = size_prep(pt, opts, ck->shards[pt->src->shard].name, window, diag);
		if (rc < 0)
			goto out;
		if (pt->prep_total > plan->max_prep)
			plan->max_prep = pt->prep_total;
	}
	/* the largest per-tensor state is set aside; chunks share the rest */
	plan->ring = window - plan->max_prep;
	for (size_t i = 0; i < ck->ntensors; i++) {
		struct qs_plan_tensor *pt = &plan->tensors[i];
		if (pt->consumed)
			continue;
		rc = cut_chunks(pt, target, memory, plan->ring, plan->max_prep,
				ck->shards[pt->src->shard].name, diag);
		if (rc < 0)
			goto out;
		plan->total_chunks += pt->nchunks;
		if (pt->nchunks) {
			struct qs_chunk_footprint fp;
			qs_plan_footprint(pt, pt->rows_per_chunk, &fp);
			/* the full footprint, not the buffers a one-pass chunk
			 * allocates: sized from those, the ring kept too few
			 * rtn reads ahead of a disk that also takes the output
			 * (2.4 s against 2.1 s wall for 2.13 GB, issue 16) */
			if (fp.total > plan->max_footprint)
				plan->max_footprint = fp.total;
			/* the compressed buffer is sized from the payload
			 * (ZSTD_compressBound): a bound on it, whatever the
			 * source encoding */
			if (fp.compressed > plan->max_payload)
				plan->max_payload = fp.compressed;
		}
	}
	/* The chunking itself goes into the options fingerprint: a resume
	 * must cut every tensor exactly as the interrupted run did. */
	XXH3_state_t *chunking = XXH3_createState();
	if (!chunking) {
		rc = -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(chunking);
	for (size_t i = 0; i < ck->ntensors; i++) {
		uint8_t le[8];
		qs_put_le64(le, plan->tensors[i].rows_per_chunk);
		XXH3_64bits_update(chunking, le, sizeof(le));
	}
	plan->chunking_fp = XXH3_64bits_digest(chunking);
	XXH3_freeState(chunking);
	plan->ntensors = ck->ntensors;
	plan->options_text = options_text(opts, target, plan->chunking_fp, level);
	if (!plan->options_text) {
		rc = -ENOMEM;
		goto out;
	}
	plan->options_fp = XXH3_64bits(plan->options_text, strlen(plan->options_text));
	plan->input_text = input_text(ck);
	char *extras = plan->input_text ? qs_input_extras(ck, opts) : NULL;
	if (!extras) {
		rc = -ENOMEM;
		goto out;
	}
	size_t a = strlen(plan->input_text), b = strlen(extras);
	char *all = realloc(plan->input_text, a + b + 1);
	if (!all) {
		free(extras);
		rc = -ENOMEM;
		goto out;
	}
	memcpy(all + a, extras, b + 1);
	plan->input_text = all;
	free(extras);
	plan->input_fp = XXH3_64bits(plan->input_text, strlen(plan->input_text));
out:
	for (size_t i = 0; i < nrules; i++)
		if (rules[i].has_regex)
			regfree(&rules[i].re);
	for (size_t i = 0; i < nkeeps; i++)
		regfree(&keeps[i]);
	free(rules);
	free(keeps);
	free(pairing);
	if (rc < 0)
		qs_plan_release(plan);
	return rc;
}

void qs_plan_release(struct qs_plan *plan)
{
	for (size_t i = 0; i < plan->nlogical; i++)
		free(plan->logical[i].name);
	free(plan->logical);
	free(plan->tensors);
	free(plan->options_text);
	free(plan->input_text);
	memset(plan, 0, sizeof(*plan));
}

void qs_plan_memory(const struct qs_plan *plan, unsigned threads, const uint32_t *from,
		    const uint32_t *end, uint64_t baseline, uint64_t reader_bytes,
		    uint64_t worker_bytes, struct qs_plan_memory *m)
{
	bool blas = false;
	memset(m, 0, sizeof(*m));
	threads = threads ? threads : 1;
	/* the same placement rule as qs_window_alloc, on the ring the
	 * pipeline maps (convert.c) */
	uint64_t size = qs_plan_ring_in_use(plan, threads), head = 0;
	for (size_t i = 0; i < plan->ntensors; i++) {
		const struct qs_plan_tensor *t = &plan->tensors[i];
		if (from[i] >= end[i])
			continue;
		if (qs_plan_needs_prep(t))
			head = 0;  /* the reader waits for an empty ring */
		uint64_t cpm = t->nchunks ? qs_plan_chunks_per_matrix(t) : 1;
		if (!t->raw && (t->scheme.ops->wants & QS_WANT_HESSIAN))
			blas = true;
		for (uint32_t c = from[i]; c < end[i]; c++) {
			struct qs_chunk_footprint fp;
			if (t->per_expert && c % cpm == 0)
				head = 0;  /* and so for each expert's */
			qs_plan_chunk_buffers(t, qs_plan_chunk_rows(t, c), &fp);
			uint64_t start = fp.total <= size - head ? head : 0;
			if (start + fp.total > m->ring)
				m->ring = start + fp.total;
			head = (start + fp.total) % size;
		}
	}
	m->state = plan->max_prep;
	m->zstd = (uint64_t)plan->contexts * plan->cctx_bytes;
	/* the reader prepares (LAPACK) only for second-order schemes */
	m->threads = (uint64_t)threads * worker_bytes + (blas ? reader_bytes : 0);
	m->baseline = baseline;
	m->total = m->ring + m->state + m->zstd + m->threads + m->baseline;
}

void qs_plan_mark_experts(struct qs_plan *plan, const struct qs_hessian *h)
{
	for (size_t i = 0; i < plan->ntensors; i++) {
		struct qs_plan_tensor *t = &plan->tensors[i];
		t->per_expert = h && t->prep_hessian && t->src->ndim >= 3 && t->matrix_rows &&
				qs_hessian_has_experts(h, t->src->name);
	}
}
