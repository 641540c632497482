/* outbuf.c - O_DIRECT staging for the container writer, with a buffered
 * fallback that writes back and drops its pages as it goes (outbuf.h). */
#include "outbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static bool direct_wanted(void)
{
	const char *e = getenv("QSHARD_DIRECT_OUTPUT");
	return !(e && strcmp(e, "0") == 0);
}

/* A second descriptor with O_DIRECT on the writer's inode (file status
 * flags are shared between dup()s, so the buffered tail writes need their
 * own); -1 where the file system refuses O_DIRECT (tmpfs) or the name no
 * longer leads to the same file. */
static int open_direct(int fd, int dirfd, const char *name)
{
	if (!direct_wanted())
		return -1;
	int dfd = openat(dirfd, name, O_WRONLY | O_DIRECT | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0)
		return -1;
	struct stat a, b;
	if (fstat(fd, &a) != 0 || fstat(dfd, &b) != 0 || a.st_dev != b.st_dev ||
	    a.st_ino != b.st_ino) {
		close(dfd);
		return -1;
	}
	return dfd;
}

int qs_outbuf_open(struct qs_outbuf *o, int fd, int dirfd, const char *name, uint64_t size)
{
	memset(o, 0, sizeof(*o));
	o->fd = fd;
	o->dfd = -1;
	void *p;
	int err = posix_memalign(&p, QS_OUTBUF_ALIGN, QS_OUTBUF_SIZE);
	if (err)
		return -err;
	o->buf = p;
	o->dfd = open_direct(fd, dirfd, name);
	o->base = size & ~(uint64_t)(QS_OUTBUF_ALIGN - 1);
	o->clean = o->base;
	o->fill = (size_t)(size - o->base);
	/* the partial block before the end is rewritten whole, directly */
	if (o->fill) {
		err = qs_pread_full(fd, o->buf, o->fill, o->base);
		if (err) {
			qs_outbuf_release(o);
			return err;
		}
	}
	o->open = true;
	return 0;
}

/* Buffered path: starts write-back of what was just written and waits for
 * and drops the previous range, so at most two buffers' worth of output
 * pages are cached at any time (the pattern sync_file_range(2) describes
 * for streaming writers). */
static void writeback_and_drop(struct qs_outbuf *o, uint64_t off, uint64_t len)
{
	(void)sync_file_range(o->fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
	if (off > o->clean) {
		(void)sync_file_range(o->fd, (off64_t)o->clean, (off64_t)(off - o->clean),
				      SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
					      SYNC_FILE_RANGE_WAIT_AFTER);
		(void)posix_fadvise(o->fd, (off_t)o->clean, (off_t)(off - o->clean),
				    POSIX_FADV_DONTNEED);
		o->clean = off;
	}
}

/* Writes buf[0, len) at base: directly when len is whole blocks and the
 * direct descriptor is there, else through the page cache.  A direct
 * write the file system rejects (EINVAL: a larger alignment than ours)
 * turns the direct path off and is done buffered. */
static int write_at(struct qs_outbuf *o, size_t from, size_t len)
{
	uint64_t off = o->base + from;
	if (o->dfd >= 0 && len % QS_OUTBUF_ALIGN == 0 && from % QS_OUTBUF_ALIGN == 0) {
		int err = qs_pwrite_full(o->dfd, o->buf + from, len, off);
		if (err != -EINVAL)
			return err;
		close(o->dfd);
		o->dfd = -1;
	}
	int err = qs_pwrite_full(o->fd, o->buf + from, len, off);
	if (!err && o->dfd < 0)
		writeback_and_drop(o, off, len);
	return err;
}

int qs_outbuf_append(struct qs_outbuf *o, const void *data, size_t len)
{
	const uint8_t *d = data;
	if (o->failed)
		return o->failed;
	while (len) {
		size_t n = QS_OUTBUF_SIZE - o->fill;
		if (n > len)
			n = len;
		memcpy(o->buf + o->fill, d, n);
		o->fill += n;
		d += n;
		len -= n;
		if (o->fill == QS_OUTBUF_SIZE) {
			int err = write_at(o, 0, QS_OUTBUF_SIZE);
			if (err)
				return o->failed = err;
			o->base += QS_OUTBUF_SIZE;
			o->fill = 0;
		}
	}
	return 0;
}

int qs_outbuf_flush(struct qs_outbuf *o)
{
	size_t whole = o->fill & ~(size_t)(QS_OUTBUF_ALIGN - 1);
	size_t tail = o->fill - whole;
	int err = o->failed;
	if (err)
		return err;
	if (o->dfd < 0) {
		/* buffered: everything at once, then keep only the partial
		 * block (it is rewritten with the bytes that follow) */
		if (o->fill)
			err = write_at(o, 0, o->fill);
	} else {
		if (whole)
			err = write_at(o, 0, whole);
		/* the tail through the page cache: O_DIRECT cannot write a
		 * part of a block, and padding would put bytes past the
		 * record that resume would have to tell from a torn frame */
		if (!err && tail)
			err = qs_pwrite_full(o->fd, o->buf + whole, tail, o->base + whole);
	}
	if (err)
		return o->failed = err;
	if (whole) {
		memmove(o->buf, o->buf + whole, tail);
		o->base += whole;
		o->fill = tail;
	}
	return 0;
}

void qs_outbuf_drop_cached(struct qs_outbuf *o)
{
	/* synced, so every page is clean and the whole file can go */
	(void)posix_fadvise(o->fd, 0, 0, POSIX_FADV_DONTNEED);
	o->clean = o->base;
}

bool qs_outbuf_direct(const struct qs_outbuf *o)
{
	return o->open && o->dfd >= 0;
}

void qs_outbuf_release(struct qs_outbuf *o)
{
	if (!o->buf)
		return;  /* never opened (a zeroed struct: dfd 0 is not ours) */
	if (o->dfd >= 0)
		close(o->dfd);
	o->dfd = -1;
	free(o->buf);
	o->buf = NULL;
	o->open = false;
}
