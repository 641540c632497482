/* unpack.c - qs_unpack: the dequantized checkpoint as safetensors, sharded
 * like the source (the tensor records name each tensor's source shard),
 * with model.safetensors.index.json and config.json.  Every file is created
 * in a fresh folder that takes the output's name only once complete
 * (outdir.h), so a failed unpack leaves the output folder as it was. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "container.h"
#include "fsafe.h"
#include "kernels.h"
#include "outdir.h"
#include "safetensors.h"
#include "scheme.h"
#include "util.h"

struct unpack_bufs {
	uint8_t *payload;
	float *weights;
	uint8_t *out;
	void *scratch;
	size_t payload_cap, weights_cap, out_cap, scratch_cap;
};

static int grow(void **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	void *n = realloc(*p, need);
	if (!n)
		return -ENOMEM;
	*p = n;
	*cap = need;
	return 0;
}

/* The largest finite value of the target dtype: binary16 65504, bfloat16
 * (2 - 2^-7) * 2^127.  A dequantized value past it (a group whose scale
 * rounds up, e.g. an F16 source holding 65504 that dequantizes to 65520)
 * would become Inf in the conversion; it is clamped instead.  NaN and Inf
 * stay what they are. */
static float finite_max(enum qs_dtype dtype)
{
	switch (dtype) {
	case QS_DTYPE_F16:
		return 65504.0f;
	case QS_DTYPE_BF16:
		return 0x1.fep127f;
	default:
		return FLT_MAX;
	}
}

static void clamp_finite(float *w, size_t n, float max)
{
	for (size_t i = 0; i < n; i++) {
		if (w[i] > max && w[i] <= FLT_MAX)
			w[i] = max;
		else if (w[i] < -max && w[i] >= -FLT_MAX)
			w[i] = -max;
	}
}

static uint64_t record_cols(const struct qs_record *r)
{
	return r->ndim ? r->shape[r->ndim - 1] : 1;
}

/* Writes one tensor's data: raw payloads as they are, quantized ones
 * dequantized and converted to dtype. */
static int unpack_tensor(const struct qs_qfile *qf, const struct qs_record *r,
			 enum qs_dtype dtype, struct qs_st_writer *sw, struct unpack_bufs *b,
			 struct qs_diag *diag)
{
	bool raw = strcmp(r->scheme, "raw") == 0;
	struct qs_scheme s;
	if (!raw) {
		int rc = qs_scheme_parse(r->scheme, &s, diag);
		if (rc < 0)
			return qs_diag_set(diag, -QS_EFORMAT, "'%s': tensor '%s': unknown scheme '%s'",
					   qf->path, r->name, r->scheme);
	}
	const struct qs_kernels *k = qs_kernels_get();
	uint64_t cols = record_cols(r);
	for (uint32_t c = 0; c < r->nchunks; c++) {
		const struct qs_chunk_entry *e = &r->chunks[c];
		int rc = qs_qfile_check_chunk(qf, r, c, diag);
		if (rc < 0)
			return rc;
		rc = grow((void **)&b->payload, &b->payload_cap, e->payload_size);
		if (rc < 0)
			return rc;
		rc = qs_qfile_read_chunk(qf, r, c, b->payload, diag);
		if (rc < 0)
			return rc;
		if (raw) {
			rc = qs_st_writer_write(sw, b->payload, e->payload_size, diag);
			if (rc < 0)
				return rc;
			continue;
		}
		uint64_t n = e->row_count * cols;
		if (s.ops->payload_size(&s, e->row_count, cols) != e->payload_size)
			return qs_diag_set(diag, -QS_EFORMAT,
					   "'%s': tensor '%s': chunk %u has %llu payload bytes, "
					   "%s needs %llu",
					   qf->path, r->name, c, (unsigned long long)e->payload_size,
					   r->scheme,
					   (unsigned long long)s.ops->payload_size(&s, e->row_count, cols));
		if ((rc = grow((void **)&b->weights, &b->weights_cap, n * sizeof(float))) < 0 ||
		    (rc = grow(&b->scratch, &b->scratch_cap,
			       s.ops->scratch_size(&s, e->row_count, cols) + 1)) < 0 ||
		    (rc = grow((void **)&b->out, &b->out_cap, n * qs_dtype_size(dtype))) < 0)
			return rc;
		rc = s.ops->dequantize(&s, b->payload, e->row_count, cols, b->weights, b->scratch);
		if (rc < 0)
			return qs_diag_set(diag, rc, "'%s': tensor '%s': chunk %u does not decode",
					   qf->path, r->name, c);
		const void *src = b->weights;
		clamp_finite(b->weights, (size_t)n, finite_max(dtype));
		if (dtype == QS_DTYPE_BF16) {
			k->f32_to_bf16(b->weights, (uint16_t *)b->out, n);
			src = b->out;
		} else if (dtype == QS_DTYPE_F16) {
			k->f32_to_f16(b->weights, (uint16_t *)b->out, n);
			src = b->out;
		}
		rc = qs_st_writer_write(sw, src, n * qs_dtype_size(dtype), diag);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Writes one shard into the fresh output folder (dirfd). */
static int unpack_shard(const struct qs_qfile *qf, int dirfd, const char *shard,
			enum qs_dtype dtype, struct unpack_bufs *b, struct qs_diag *diag)
{
	size_t n = 0;
	for (size_t i = 0; i < qf->nrecords; i++)
		n += strcmp(qf->records[i].shard, shard) == 0;
	struct qs_st_out_tensor *ts = calloc(n ? n : 1, sizeof(*ts));
	const struct qs_record **recs = calloc(n ? n : 1, sizeof(*recs));
	struct qs_st_writer *sw = NULL;
	int rc = 0;
	if (!ts || !recs) {
		rc = -ENOMEM;
		goto out;
	}
	size_t at = 0;
	for (size_t i = 0; i < qf->nrecords; i++) {
		const struct qs_record *r = &qf->records[i];
		if (strcmp(r->shard, shard) != 0)
			continue;
		recs[at] = r;
		ts[at].name = r->name;
		ts[at].dtype = strcmp(r->scheme, "raw") == 0 ? r->dtype : dtype;
		ts[at].ndim = r->ndim;
		memcpy(ts[at].shape, r->shape, sizeof(ts[at].shape));
		at++;
	}
	rc = qs_st_writer_openat(dirfd, shard, ts, n, qf->header.metadata_json, &sw, diag);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = unpack_tensor(qf, recs[i], dtype, sw, b, diag);
	if (rc == 0) {
		rc = qs_st_writer_close(sw, diag);
		sw = NULL;
	}
out:
	if (sw)
		qs_st_writer_abort(sw);
	free(ts);
	free(recs);
	return rc;
}

/* Creates name in the fresh output folder (never through a link, never
 * an existing file) holding text, synced. */
static int write_text(int dirfd, const char *name, const char *text, struct qs_diag *diag)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return qs_diag_set(diag, -errno, "'%s': cannot create: %s", name,
				   qs_write_open_error(-errno));
	int rc = qs_pwrite_full(fd, text, strlen(text), 0);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc)
		qs_diag_set(diag, rc, "'%s': cannot write: %s", name, qs_strerror(rc));
	return rc;
}

static int write_index(const struct qs_qfile *qf, int dirfd, enum qs_dtype dtype,
		       struct qs_diag *diag)
{
	json_t *root = json_object(), *meta = json_object(), *map = json_object();
	uint64_t total = 0;
	for (size_t i = 0; i < qf->nrecords; i++) {
		const struct qs_record *r = &qf->records[i];
		enum qs_dtype dt = strcmp(r->scheme, "raw") == 0 ? r->dtype : dtype;
		uint64_t n = qs_dtype_size(dt);
		for (uint32_t d = 0; d < r->ndim; d++)
			n *= r->shape[d];
		total += n;
		json_object_set_new(map, r->name, json_string(r->shard));
	}
	json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
	json_object_set_new(root, "metadata", meta);
	json_object_set_new(root, "weight_map", map);
	char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	if (!text)
		return -ENOMEM;
	int rc = write_text(dirfd, "model.safetensors.index.json", text, diag);
	free(text);
	return rc;
}

/* config.json as unpack writes it.  FP8 weights come out dequantized
 * (BF16 by default), so their quantization_config would make loaders read
 * them as FP8 again: it is dropped unless an FP8 tensor was kept as it
 * was.  Returns a malloc'd text, or NULL on ENOMEM. */
static char *unpacked_config(const struct qs_qfile *qf)
{
	const char *text = qf->header.config_json;
	bool dequantized_fp8 = false, raw_fp8 = false;
	for (size_t i = 0; i < qf->nrecords; i++) {
		const struct qs_record *r = &qf->records[i];
		if (r->dtype != QS_DTYPE_F8_E4M3 && r->dtype != QS_DTYPE_F8_E5M2)
			continue;
		if (strcmp(r->scheme, "raw") == 0)
			raw_fp8 = true;
		else
			dequantized_fp8 = true;
	}
	json_t *root = dequantized_fp8 && !raw_fp8 ? json_loads(text, 0, NULL) : NULL;
	if (!root || !json_is_object(root) || !json_object_get(root, "quantization_config")) {
		json_decref(root);
		return strdup(text);
	}
	json_object_del(root, "quantization_config");
	char *out = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(root);
	return out;
}

int qs_unpack(const struct qs_unpack_opts *opts, struct qs_diag *diag)
{
	enum qs_dtype dtype = opts->dtype;
	if (dtype != QS_DTYPE_BF16 && dtype != QS_DTYPE_F16 && dtype != QS_DTYPE_F32)
		return qs_diag_set(diag, -QS_EUSAGE, "--dtype must be bf16, f16 or f32");
	struct qs_qfile *qf;
	int rc = qs_qfile_open(opts->input, &qf, diag);
	if (rc < 0)
		return rc;
	struct qs_file_id in_id;
	struct qs_outdir od;
	rc = qs_file_id_of_fd(qf->fd, &in_id);
	if (rc < 0) {
		qs_qfile_free(qf);
		return qs_diag_set(diag, rc, "'%s': cannot stat: %s", opts->input, qs_strerror(rc));
	}
	struct qs_outdir_guard guard = {&in_id, opts->input, qf->header.input};
	rc = qs_outdir_begin(&od, opts->outdir, opts->force, &guard, diag);
	if (rc < 0) {
		qs_outdir_release(&od);
		qs_qfile_free(qf);
		return rc;
	}
	struct unpack_bufs b = {0};
	/* shards in order of first appearance */
	size_t nshards = 0;
	for (size_t i = 0; rc == 0 && i < qf->nrecords; i++) {
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(qf->records[j].shard, qf->records[i].shard) == 0;
		if (seen)
			continue;
		nshards++;
		rc = unpack_shard(qf, od.fd, qf->records[i].shard, dtype, &b, diag);
	}
	bool single = nshards == 1 && strcmp(qf->records[0].shard, "model.safetensors") == 0;
	if (rc == 0 && !single)
		rc = write_index(qf, od.fd, dtype, diag);
	if (rc == 0 && qf->header.config_json) {
		char *config = unpacked_config(qf);
		rc = config ? write_text(od.fd, "config.json", config, diag) : -ENOMEM;
		free(config);
	}
	if (rc == 0)
		rc = qs_outdir_commit(&od, diag);
	qs_outdir_release(&od);
	free(b.payload);
	free(b.weights);
	free(b.out);
	free(b.scratch);
	qs_qfile_free(qf);
	return rc;
}
