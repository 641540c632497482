/* hessian.c - --hessian files: a safetensors file mapping each tensor's
 * Hugging Face name to H = X^T X of its inputs (f32[cols, cols], key NAME
 * or NAME.hessian) or to diag(H) alone (f32[cols], key NAME or
 * NAME.hessian_diag).  contrib/python/collect_stats.py writes them.
 *
 * Only the header is kept in memory; an entry is read on demand with
 * pread in bounded pieces straight into the caller's buffer (which is part
 * of the memory window), so a 3 GB Hessian never needs a second copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "calib.h"
#include "safetensors.h"
#include "util.h"

/* Bounded reads: one syscall never asks for more than this. */
#define PIECE (16u << 20)

struct qs_hessian {
	char *path;
	int fd;
	uint64_t size;
	struct qs_st_header hdr;
};

int qs_hessian_open(const char *path, struct qs_hessian **out, struct qs_diag *diag)
{
	*out = NULL;
	struct qs_hessian *h = calloc(1, sizeof(*h));
	if (!h)
		return qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
	h->fd = -1;
	int64_t mtime;
	int rc = qs_st_read_file(path, &h->hdr, &h->size, &mtime, diag);
	if (rc < 0) {
		free(h);
		return rc;
	}
	h->path = strdup(path);
	if (!h->path) {
		rc = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", path);
		goto fail;
	}
	h->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (h->fd < 0) {
		rc = qs_diag_set(diag, -errno, "'%s': cannot open: %s", path, strerror(errno));
		goto fail;
	}
	*out = h;
	return 0;
fail:
	qs_hessian_free(h);
	return rc;
}

void qs_hessian_free(struct qs_hessian *h)
{
	if (!h)
		return;
	if (h->fd >= 0)
		close(h->fd);
	qs_st_header_release(&h->hdr);
	free(h->path);
	free(h);
}

static const struct qs_st_tensor *find(const struct qs_hessian *h, const char *name,
				       const char *suffix)
{
	size_t nl = strlen(name), sl = strlen(suffix);
	for (size_t i = 0; i < h->hdr.ntensors; i++) {
		const char *t = h->hdr.tensors[i].name;
		if (strncmp(t, name, nl) == 0 && strcmp(t + nl, suffix) == 0 &&
		    strlen(t) == nl + sl)
			return &h->hdr.tensors[i];
	}
	return NULL;
}

/* Reads n little-endian f32 at off into dst. */
static int read_f32(const struct qs_hessian *h, const char *tensor, uint64_t off,
		    float *dst, uint64_t n, struct qs_diag *diag)
{
	uint8_t *p = (uint8_t *)dst;
	uint64_t left = n * 4;
	while (left) {
		size_t len = left > PIECE ? PIECE : (size_t)left;
		int rc = qs_pread_full(h->fd, p, len, off);
		if (rc < 0)
			return qs_diag_set(diag, rc, "'%s': tensor '%s': cannot read: %s", h->path,
					   tensor, rc == -QS_EFORMAT ? "file shrank while reading"
								      : strerror(-rc));
		p += len;
		off += len;
		left -= len;
	}
	for (uint64_t i = 0; i < n; i++) {
		uint32_t u = qs_get_le32((const uint8_t *)(dst + i));
		memcpy(dst + i, &u, 4);
	}
	return 0;
}

/* Reads H of `cols` columns from entry t, starting `first` floats into its
 * data: the full matrix, or (diag) only its diagonal, spread out. */
static int load(const struct qs_hessian *h, const struct qs_st_tensor *t, uint64_t first,
		uint64_t cols, bool diag, float *dst, bool *diag_only, struct qs_diag *d)
{
	uint64_t sq = cols * cols;  /* checked by the callers */
	uint64_t off = t->offset + first * 4;
	if (!diag) {
		int rc = read_f32(h, t->name, off, dst, sq, d);
		return rc < 0 ? rc : 1;
	}
	/* The diagonal goes to the last row first, then is spread out row by
	 * row: row i < cols-1 never reaches the last row. */
	float *tail = dst + (sq - cols);
	int rc = read_f32(h, t->name, off, tail, cols, d);
	if (rc < 0)
		return rc;
	for (uint64_t i = 0; i < cols; i++) {
		float v = tail[i];
		float *row = dst + i * cols;
		memset(row, 0, (size_t)cols * sizeof(float));
		row[i] = v;
	}
	*diag_only = true;
	return 1;
}

static int bad_shape(const struct qs_hessian *h, const struct qs_st_tensor *t,
		     const char *expected, struct qs_diag *diag)
{
	char shape[96] = "";
	size_t used = 0;
	for (uint32_t i = 0; i < t->ndim && used < sizeof(shape) - 24; i++)
		used += (size_t)snprintf(shape + used, sizeof(shape) - used, "%s%llu", i ? ", " : "",
					 (unsigned long long)t->shape[i]);
	return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': Hessian is %s[%s], expected %s",
			   h->path, t->name, qs_dtype_name(t->dtype), shape, expected);
}

static int check_cols(const struct qs_hessian *h, const char *name, uint64_t cols,
		      struct qs_diag *diag)
{
	uint64_t sq;
	if (!qs_mul_u64(cols, cols, &sq) || sq > SIZE_MAX / 4)
		return qs_diag_set(diag, -QS_ETOOBIG, "'%s': tensor '%s': %llu columns is too many",
				   h->path, name, (unsigned long long)cols);
	return 0;
}

int qs_hessian_get(const struct qs_hessian *h, const char *tensor, uint64_t cols, float *dst,
		   bool *diag_only, struct qs_diag *diag)
{
	static const char *const suffixes[] = { "", ".hessian", ".hessian_diag" };
	const struct qs_st_tensor *t = NULL;

	*diag_only = false;
	for (size_t i = 0; i < 3 && !t; i++)
		t = find(h, tensor, suffixes[i]);
	if (!t)
		return 0;
	int rc = check_cols(h, t->name, cols, diag);
	if (rc < 0)
		return rc;
	bool full = t->ndim == 2 && t->shape[0] == cols && t->shape[1] == cols;
	bool dg = t->ndim == 1 && t->shape[0] == cols;
	if (t->dtype != QS_DTYPE_F32 || !(full || dg)) {
		char want[96];
		snprintf(want, sizeof(want), "F32[%llu, %llu] or F32[%llu]", (unsigned long long)cols,
			 (unsigned long long)cols, (unsigned long long)cols);
		return bad_shape(h, t, want, diag);
	}
	return load(h, t, 0, cols, dg, dst, diag_only, diag);
}

/* The per-expert Hugging Face name of expert e of a stacked tensor:
 * "model.layers.3.mlp.experts.gate_proj.weight" ->
 * "model.layers.3.mlp.experts.7.gate_proj.weight" (DeepSeek, Qwen-MoE:
 * what a checkpoint with one tensor per expert names them, and so what a
 * statistics collector run on one writes).  False without ".experts.". */
static bool expert_name(const char *tensor, uint64_t e, char *out, size_t cap)
{
	const char *at = NULL;
	for (const char *p = strstr(tensor, ".experts."); p; p = strstr(p + 1, ".experts."))
		at = p;
	if (!at)
		return false;
	size_t head = (size_t)(at - tensor) + 9;
	int n = snprintf(out, cap, "%.*s%llu.%s", (int)head, tensor, (unsigned long long)e,
			 tensor + head);
	return n > 0 && (size_t)n < cap;
}

/* A stacked entry NAME(.hessian) F32[E, cols, cols] or NAME(.hessian_diag)
 * F32[E, cols], or NULL. */
static const struct qs_st_tensor *stacked(const struct qs_hessian *h, const char *tensor)
{
	static const char *const suffixes[] = { "", ".hessian", ".hessian_diag" };
	for (size_t i = 0; i < 3; i++) {
		const struct qs_st_tensor *t = find(h, tensor, suffixes[i]);
		if (t && (t->ndim == 3 || (t->ndim == 2 && i == 2) ||
			  (t->ndim == 2 && i == 0 && t->shape[0] != t->shape[1])))
			return t;
	}
	return NULL;
}

bool qs_hessian_has_experts(const struct qs_hessian *h, const char *tensor)
{
	char name[1024];
	return stacked(h, tensor) ||
	       (expert_name(tensor, 0, name, sizeof(name)) &&
		(find(h, name, "") || find(h, name, ".hessian") || find(h, name, ".hessian_diag")));
}

int qs_hessian_get_expert(const struct qs_hessian *h, const char *tensor, uint64_t expert,
			  uint64_t nexperts, uint64_t cols, float *dst, bool *diag_only,
			  struct qs_diag *diag)
{
	*diag_only = false;
	if (expert >= nexperts)
		return qs_diag_set(diag, -QS_EUSAGE, "'%s': tensor '%s': no expert %llu of %llu",
				   h->path, tensor, (unsigned long long)expert,
				   (unsigned long long)nexperts);
	int rc = check_cols(h, tensor, cols, diag);
	if (rc < 0)
		return rc;
	const struct qs_st_tensor *t = stacked(h, tensor);
	if (t) {
		bool full = t->ndim == 3 && t->shape[0] == nexperts && t->shape[1] == cols &&
			    t->shape[2] == cols;
		bool dg = t->ndim == 2 && t->shape[0] == nexperts && t->shape[1] == cols;
		if (t->dtype != QS_DTYPE_F32 || !(full || dg)) {
			char want[128];
			snprintf(want, sizeof(want),
				 "F32[%llu, %llu, %llu] or F32[%llu, %llu] (one per expert)",
				 (unsigned long long)nexperts, (unsigned long long)cols,
				 (unsigned long long)cols, (unsigned long long)nexperts,
				 (unsigned long long)cols);
			return bad_shape(h, t, want, diag);
		}
		return load(h, t, expert * (full ? cols * cols : cols), cols, dg, dst, diag_only,
			    diag);
	}
	char name[1024];
	if (!expert_name(tensor, expert, name, sizeof(name)))
		return 0;
	return qs_hessian_get(h, name, cols, dst, diag_only, diag);
}
