/* reader.h - reading source tensor bytes into window buffers, through
 * io_uring (default), pread or mmap.  The pipeline's reader thread submits
 * requests in plan order and reaps completions; io_uring keeps several
 * requests in flight so the device never idles while workers compute.
 */
#ifndef QS_READER_H
#define QS_READER_H

#include <stdbool.h>
#include <stdint.h>

#include "qshard.h"
#include "safetensors.h"

struct qs_read_req {
	uint32_t shard;
	uint64_t offset, len;  /* wanted byte range of the shard */
	uint8_t *buf;          /* QS_BUF_ALIGN-aligned, len + 2*QS_BUF_ALIGN bytes */
	uint8_t *data;         /* out: where the wanted bytes start in buf */
	void *tag;             /* the caller's */
	int result;            /* out: 0 or -errno / -QS_EFORMAT / -QS_ESOURCE */
	const char *why;       /* out with -QS_ESOURCE: what changed (static text) */
	/* backend state */
	uint64_t rd_off, rd_len, rd_done;  /* the (aligned) range actually read */
	bool direct;
};

struct qs_reader;

/* Shards are opened when their first read is submitted and closed once
 * the reads have moved past them, so a checkpoint of thousands of shards
 * needs a handful of descriptors.  Every shard must still be the file whose
 * header the checkpoint read (qs_st_shard.id): it is checked when opened
 * and again after every read, and a read from a shard that changed (or a
 * short one) fails with -QS_ESOURCE (-QS_EFORMAT) instead of delivering
 * bytes of a file that moved.  mmap reads survive a shard truncated under
 * them: the SIGBUS becomes -QS_EFORMAT.
 *
 * io QS_IO_AUTO means io_uring; when io_uring
 * is unavailable (ENOSYS, or EPERM under a seccomp policy) falls back to
 * pread and writes a one-line notice into notice (else notice[0] = 0). */
int qs_reader_open(const struct qs_checkpoint *ckpt, enum qs_io_backend io,
		   unsigned depth, struct qs_reader **out, enum qs_io_backend *used,
		   char *notice, size_t notice_len, struct qs_diag *diag);
void qs_reader_free(struct qs_reader *r);

/* Queues a read.  pread and mmap complete it before returning. */
int qs_reader_submit(struct qs_reader *r, struct qs_read_req *req);
/* Returns a completed request (1), or 0 when none is ready (with wait:
 * only when nothing is in flight).  Negative on a ring failure. */
int qs_reader_reap(struct qs_reader *r, bool wait, struct qs_read_req **done);
unsigned qs_reader_inflight(const struct qs_reader *r);

#endif /* QS_READER_H */
