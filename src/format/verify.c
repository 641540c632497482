/* verify.c - qs_verify: proves a qshard file is exactly what its writer
 * produced.  Metadata frames carry their own xxh3; data frames are pinned
 * by the index (every frame at its recorded offset and size, no byte of the
 * file unaccounted for), their stored bytes hash as recorded, and they
 * decompress to payloads of the recorded size and xxh3.  A flipped bit
 * anywhere therefore shows up as a named damaged part. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "container.h"
#include "safetensors.h"
#include "scaled_source.h"
#include "util.h"

#define SOURCE_PIECE (16u << 20)

struct vctx {
	qs_damage_fn report;
	void *user;
	size_t damaged;
	bool format;  /* a structural (not checksum) problem was seen */
};

static void on_damage(struct vctx *v, const char *what, const char *detail)
{
	v->damaged++;
	if (v->report)
		v->report(what, detail, v->user);
}

/* Checks one tensor's frames and record at the places the index gives;
 * returns the first problem (static text or in buf) or NULL. */
static const char *check_tensor(const struct qs_qfile *qf, const struct qs_record *r,
				uint64_t *expected, void **buf, size_t *bufcap,
				char *msg, size_t msglen, int *err)
{
	const char *problem = NULL;
	*err = 0;
	for (uint32_t c = 0; c < r->nchunks; c++) {
		const struct qs_chunk_entry *e = &r->chunks[c];
		uint32_t magic;
		uint64_t size;
		if (!problem && e->frame_offset != *expected) {
			snprintf(msg, msglen, "chunk %u: frame is not where the layout places it", c);
			problem = msg;
		}
		*expected = e->frame_offset + e->frame_size;
		if (problem)
			continue;
		int fe = qs_frame_size_at(qf->fd, e->frame_offset, qf->trailer.index_offset,
					  &magic, &size);
		if (fe < 0 && fe != -QS_EFORMAT) {
			*err = fe;
			return "read failed";
		}
		if (fe || magic != QS_ZSTD_MAGIC || size != e->frame_size) {
			snprintf(msg, msglen, "chunk %u: malformed zstd frame", c);
			problem = msg;
			continue;
		}
		struct qs_diag d;
		if (e->payload_size > SIZE_MAX) {
			snprintf(msg, msglen, "chunk %u payload too large", c);
			problem = msg;
			continue;
		}
		if (qs_qfile_check_chunk(qf, r, c, &d) < 0) {
			snprintf(msg, msglen, "chunk %u: frame content size does not match the record", c);
			problem = msg;
			continue;
		}
		if (*bufcap < e->payload_size || !*buf) {
			size_t want = e->payload_size ? (size_t)e->payload_size : 1;
			void *nb = realloc(*buf, want);
			if (!nb) {
				*err = -ENOMEM;
				return "out of memory";
			}
			*buf = nb;
			*bufcap = want;
		}
		int re = qs_qfile_read_chunk(qf, r, c, *buf, &d);
		if (re && re != -QS_EFORMAT && re != -QS_ECHECKSUM) {
			*err = re;
			return re == -ENOMEM ? "out of memory" : "read failed";
		}
		if (re) {
			/* reuse read_chunk's reason, without its "'file': tensor
			 * 'name': " prefix: "chunk 2: payload checksum mismatch" */
			char prefix[64];
			int pl = snprintf(prefix, sizeof(prefix), "chunk %u: ", c);
			const char *why = strstr(d.msg, prefix);
			if (why && pl > 0 && (size_t)pl < sizeof(prefix))
				snprintf(msg, msglen, "%s", why);
			else
				snprintf(msg, msglen, "chunk %u damaged", c);
			problem = msg;
		}
	}
	if (!problem && r->record_offset != *expected)
		problem = "record is not where the layout places it";
	uint64_t rec_size = 8 + (uint64_t)r->record_content_len;
	*expected = r->record_offset + rec_size;
	if (problem)
		return problem;
	/* the record frame must be byte-identical to its (checksummed) index
	 * copy; encoding is canonical, so re-encoding the index copy gives it */
	uint8_t *want, *have;
	size_t wlen;
	*err = qs_record_encode(r, &want, &wlen);
	if (*err)
		return "cannot encode the record";
	if (wlen != rec_size) {
		free(want);
		return "record differs from the index";
	}
	have = malloc(wlen);
	if (!have) {
		free(want);
		*err = -ENOMEM;
		return "out of memory";
	}
	int re = qs_pread_full(qf->fd, have, wlen, r->record_offset);
	if (re == 0 && memcmp(want, have, wlen) != 0)
		problem = "record differs from the index";
	else if (re == -QS_EFORMAT)
		problem = "record lies past the end of the file";
	else if (re) {
		*err = re;
		problem = "read failed";
	}
	free(want);
	free(have);
	return problem;
}

static int cmp_tensor_name(const void *a, const void *b)
{
	const struct qs_st_tensor *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* xxh3-64 of tensor t's bytes, read through fds (opened on demand). */
static int hash_tensor(const struct qs_checkpoint *ck, const struct qs_st_tensor *t, int *fds,
		       uint8_t *piece, XXH3_state_t *st, uint64_t *digest, struct qs_diag *diag)
{
	const struct qs_st_shard *sh = &ck->shards[t->shard];
	int err = 0;
	/* one shard open at a time: records follow shard order, and a
	 * checkpoint may have more shards than descriptors allowed */
	for (size_t k = 0; k < ck->nshards; k++)
		if (k != t->shard && fds[k] >= 0) {
			close(fds[k]);
			fds[k] = -1;
		}
	if (fds[t->shard] < 0) {
		fds[t->shard] = open(sh->path, O_RDONLY | O_CLOEXEC);
		if (fds[t->shard] < 0) {
			err = -errno;
			return qs_diag_set(diag, err, "'%s': cannot open: %s", sh->name,
					   qs_strerror(err));
		}
	}
	XXH3_64bits_reset(st);
	for (uint64_t done = 0; done < t->nbytes;) {
		size_t n = t->nbytes - done < SOURCE_PIECE ? (size_t)(t->nbytes - done)
							   : SOURCE_PIECE;
		err = qs_pread_full(fds[t->shard], piece, n, t->offset + done);
		if (err)
			return qs_diag_set(diag, err, "'%s': tensor '%s': cannot read: %s", sh->name,
					   t->name, qs_strerror(err));
		XXH3_64bits_update(st, piece, n);
		done += n;
	}
	*digest = XXH3_64bits_digest(st);
	return 0;
}

/* Rehashes each tensor's source bytes and compares with source_xxh3.  A
 * quantized FP8 weight's checksum covers its scale too (scaled_source.h). */
static int check_source(const struct qs_qfile *qf, const char *source, struct vctx *v,
			struct qs_diag *diag)
{
	struct qs_checkpoint *ck;
	int err = qs_checkpoint_open(source, &ck, diag);
	if (err)
		return err;
	const struct qs_st_tensor **by = NULL;
	struct qs_src_pairing *pairing = NULL;
	bool *covered = NULL;
	int *fds = NULL;
	uint8_t *piece = NULL;
	XXH3_state_t *st = XXH3_createState();
	by = malloc((ck->ntensors ? ck->ntensors : 1) * sizeof(*by));
	fds = malloc((ck->nshards ? ck->nshards : 1) * sizeof(*fds));
	piece = malloc(SOURCE_PIECE);
	if (!st || !by || !fds || !piece) {
		err = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", source);
		goto out;
	}
	for (size_t i = 0; i < ck->nshards; i++)
		fds[i] = -1;
	pairing = calloc(ck->ntensors + 1, sizeof(*pairing));
	covered = calloc(ck->ntensors + 1, sizeof(*covered));
	if (!pairing || !covered) {
		err = qs_diag_set(diag, -ENOMEM, "'%s': out of memory", source);
		goto out;
	}
	err = qs_src_pair_scales(ck, pairing, diag);
	if (err)
		goto out;
	for (size_t i = 0; i < ck->ntensors; i++)
		by[i] = &ck->tensors[i];
	qsort(by, ck->ntensors, sizeof(*by), cmp_tensor_name);

	for (size_t i = 0; i < qf->nrecords && !err; i++) {
		const struct qs_record *r = &qf->records[i];
		struct qs_st_tensor key = {.name = r->name};
		const struct qs_st_tensor *kp = &key, **hit;
		hit = bsearch(&kp, by, ck->ntensors, sizeof(*by), cmp_tensor_name);
		char *blocks = NULL;
		if (!hit && r->dtype == QS_DTYPE_MXFP4 &&
		    (blocks = malloc(strlen(r->name) + 8)) != NULL) {
			/* held by the source as NAME_blocks + NAME_scales */
			sprintf(blocks, "%s_blocks", r->name);
			key.name = blocks;
			hit = bsearch(&kp, by, ck->ntensors, sizeof(*by), cmp_tensor_name);
			if (hit && pairing[*hit - ck->tensors].enc != QS_SRC_MXFP4)
				hit = NULL;
		}
		free(blocks);
		if (!hit) {
			on_damage(v, r->name, "missing in source");
			continue;
		}
		const struct qs_st_tensor *t = *hit;
		uint64_t digest, scale_digest;
		err = hash_tensor(ck, t, fds, piece, st, &digest, diag);
		size_t comp = pairing[t - ck->tensors].companion;
		covered[t - ck->tensors] = true;
		if (comp != SIZE_MAX && strcmp(r->scheme, "raw") != 0)
			covered[comp] = true;  /* consumed by the quantized weight */
		if (!err && comp != SIZE_MAX && strcmp(r->scheme, "raw") != 0) {
			err = hash_tensor(ck, &ck->tensors[comp], fds, piece, st, &scale_digest, diag);
			digest = qs_paired_source_xxh3(digest, scale_digest);
		}
		if (!err && digest != r->source_xxh3)
			on_damage(v, r->name, "source checksum mismatch");
	}
	/* and the reverse: a source tensor no record holds (nor consumed as
	 * a scale) means the file was not made from this checkpoint, or
	 * lost a tensor */
	for (size_t i = 0; i < ck->ntensors && !err; i++)
		if (!covered[i])
			on_damage(v, ck->tensors[i].name, "in the source but absent from the file");
out:
	if (fds)
		for (size_t i = 0; i < ck->nshards; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	free(fds);
	free(by);
	free(piece);
	free(pairing);
	free(covered);
	XXH3_freeState(st);
	qs_checkpoint_free(ck);
	return err;
}

static void open_damage(const char *what, const char *detail, void *user)
{
	on_damage(user, what, detail);
}

int qs_verify(const char *path, const char *source, qs_damage_fn report,
	      void *user, struct qs_diag *diag)
{
	struct vctx v = {report, user, 0, false};
	struct qs_qfile *qf;
	const char *fname = qs_basename(path);
	int err = qs_qfile_open_report(path, &qf, open_damage, &v, diag);
	if (err)
		return err;

	/* the header frame (validated by open) starts the walk */
	uint32_t magic;
	uint64_t expected;
	err = qs_frame_size_at(qf->fd, 0, qf->trailer.index_offset, &magic, &expected);
	if (err || magic != QS_MAGIC_HEADER) {
		if (err && err != -QS_EFORMAT) {
			qs_diag_set(diag, err, "'%s': cannot read: %s", fname, qs_strerror(err));
			goto out;
		}
		err = 0;
		on_damage(&v, "header", "frame damaged");
		v.format = true;
		expected = UINT64_MAX;
	}

	void *buf = NULL;
	size_t bufcap = 0;
	char msg[256];
	for (size_t i = 0; i < qf->nrecords; i++) {
		const struct qs_record *r = &qf->records[i];
		const char *problem = check_tensor(qf, r, &expected, &buf, &bufcap, msg,
						   sizeof(msg), &err);
		if (err) {
			qs_diag_set(diag, err, "'%s': tensor '%s': %s", fname, r->name, problem);
			break;
		}
		if (problem)
			on_damage(&v, r->name, problem);
	}
	free(buf);
	if (err)
		goto out;
	if (expected != qf->trailer.index_offset) {
		on_damage(&v, "index", "data area does not end where the index begins");
		v.format = true;
	}
	if (source) {
		err = check_source(qf, source, &v, diag);
		if (err)
			goto out;
	}
	if (v.damaged) {
		err = v.format ? -QS_EFORMAT : -QS_ECHECKSUM;
		qs_diag_set(diag, err, "'%s': %zu damaged part%s", fname, v.damaged,
			    v.damaged == 1 ? "" : "s");
	}
out:
	qs_qfile_free(qf);
	return err;
}
