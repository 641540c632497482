/* outbuf.h - the container writer's path to the disk: an append-only
 * staging buffer written with O_DIRECT where the file system allows, and
 * through the page cache (written back and dropped as it goes) where it
 * does not.  Either way the run leaves no output pages in the page cache:
 * a conversion writes tens of GB that nobody reads back soon, and on a
 * low-RAM machine buffered output fills memory with dirty pages (issue 16:
 * the buffered copies cost more CPU than quantizing).
 *
 * The buffer holds the file's bytes [base, base + fill); base is a
 * multiple of QS_OUTBUF_ALIGN.  A full buffer goes out as one aligned
 * direct write.  qs_outbuf_flush() (the writer calls it after each tensor
 * record, before the sync that makes the record durable) writes the
 * aligned part directly and the unaligned tail through the page cache, so
 * the file then holds every appended byte, exactly as with plain pwrite:
 * resume semantics are unchanged.  The tail stays in the buffer and is
 * written again, directly, as part of the next aligned block (the kernel
 * writes back and invalidates the cached page first).
 */
#ifndef QS_OUTBUF_H
#define QS_OUTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Logical block size O_DIRECT needs for offsets, lengths and memory; 4096
 * covers 512-byte and 4K-sector devices.  A file system that wants more
 * fails the first direct write with EINVAL and the buffered path takes
 * over. */
#define QS_OUTBUF_ALIGN 4096u
/* Staging bytes: part of the QS_WINDOW_OVERHEAD share of --memory
 * (plan.h), so the window and the chunking do not change. */
#define QS_OUTBUF_SIZE (2u << 20)

struct qs_outbuf {
	int fd;          /* the writer's descriptor (buffered) */
	int dfd;         /* O_DIRECT descriptor on the same inode, or -1 */
	uint8_t *buf;    /* QS_OUTBUF_SIZE bytes, QS_OUTBUF_ALIGN-aligned */
	size_t fill;     /* bytes of buf in use */
	uint64_t base;   /* file offset of buf[0] */
	uint64_t clean;  /* buffered path: pages below this are written back and dropped */
	/* the first write error: what is staged is never written after it
	 * (the file keeps a torn tail, which resume cuts off) */
	int failed;
	bool open;
};

/* Starts appending at offset size of the file behind fd (named name in
 * the folder dirfd, reopened with O_DIRECT unless the file system refuses
 * it or QSHARD_DIRECT_OUTPUT=0 is set).  The bytes from the aligned block
 * start up to size are read back into the buffer. */
int qs_outbuf_open(struct qs_outbuf *o, int fd, int dirfd, const char *name, uint64_t size);
/* Appends len bytes at the logical end. */
int qs_outbuf_append(struct qs_outbuf *o, const void *data, size_t len);
/* Puts every appended byte into the file (see above).  After a write
 * error every later call fails with it. */
int qs_outbuf_flush(struct qs_outbuf *o);
/* After the caller synced the file: drops its cached pages. */
void qs_outbuf_drop_cached(struct qs_outbuf *o);
/* True when the output goes out with O_DIRECT. */
bool qs_outbuf_direct(const struct qs_outbuf *o);
/* Frees the buffer and the direct descriptor (not fd); unflushed bytes are
 * lost, as the ones of a killed run are. */
void qs_outbuf_release(struct qs_outbuf *o);

#endif /* QS_OUTBUF_H */
