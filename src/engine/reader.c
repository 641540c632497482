/* reader.c - source reads for the pipeline: io_uring with O_DIRECT where
 * the file system allows, pread, or mmap (see reader.h).  Consumed ranges
 * are dropped from the page cache so a low-RAM machine does not thrash on
 * a checkpoint many times its memory. */
#include "config.h"
#include "reader.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan.h"
#include "util.h"

struct shard_file {
	int fd;          /* buffered; -1 until the first read, and once done */
	int dfd;         /* O_DIRECT, or -1 where the file system refuses it */
	uint64_t size;
	uint8_t *map;    /* mmap backend */
	const char *name, *path;
	const struct qs_file_id *want;  /* the file whose header was read */
	unsigned inflight;              /* io_uring reads not yet reaped */
	uint64_t last_use;              /* the reader's tick of its last request */
	bool no_direct;                 /* the file system refused O_DIRECT */
};

struct qs_reader {
	enum qs_io_backend io;
	struct shard_file *files;
	size_t nfiles;
	/* io_uring */
	struct io_uring ring;
	bool ring_ok;
	unsigned depth, inflight;
	/* synchronous backends: completed requests waiting to be reaped */
	struct qs_read_req **ready;
	size_t nready, capready;
	unsigned nopen;            /* shards with descriptors */
	uint64_t tick;
	bool bus_handler;          /* our SIGBUS handler is installed */
	struct sigaction old_bus;
};

static uint64_t align_down(uint64_t v)
{
	return v / QS_BUF_ALIGN * QS_BUF_ALIGN;
}

static uint64_t align_up(uint64_t v)
{
	return (v + QS_BUF_ALIGN - 1) / QS_BUF_ALIGN * QS_BUF_ALIGN;
}

static int open_files(struct qs_reader *r, const struct qs_checkpoint *ck)
{
	r->files = calloc(ck->nshards ? ck->nshards : 1, sizeof(*r->files));
	if (!r->files)
		return -ENOMEM;
	r->nfiles = ck->nshards;
	for (size_t i = 0; i < ck->nshards; i++) {
		struct shard_file *f = &r->files[i];
		f->fd = f->dfd = -1;
		f->name = ck->shards[i].name;
		f->path = ck->shards[i].path;
		f->size = ck->shards[i].size;
		f->want = &ck->shards[i].id;
	}
	return 0;
}

/* Shards kept open at once: the one being read, the one holding the
 * scales of FP8/MXFP4 weights (scaled_source.h), a little slack for reads
 * still in flight on the previous one. */
#define OPEN_MAX 4

static void close_file(struct shard_file *f)
{
	if (f->map)
		munmap(f->map, f->size);
	f->map = NULL;
	if (f->fd >= 0)
		close(f->fd);
	if (f->dfd >= 0)
		close(f->dfd);
	f->fd = f->dfd = -1;
}

/* 0 while the shard open as f->fd is still the one the plan was made from;
 * -QS_ESOURCE (with q->why) once it is not. */
static int still_same(struct shard_file *f, struct qs_read_req *q)
{
	struct qs_file_id now;
	int err = qs_file_id_of_fd(f->fd, &now);
	if (err)
		return err;
	if (qs_file_id_same(&now, f->want))
		return 0;
	q->why = qs_file_id_diff(f->want, &now);
	return -QS_ESOURCE;
}

static int ensure_open(struct qs_reader *r, struct qs_read_req *q)
{
	struct shard_file *f = &r->files[q->shard];
	f->last_use = ++r->tick;
	if (f->fd >= 0)
		return 0;
	/* reopened or opened for the first time, it is checked against the
	 * header-time identity all the same */
	f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0)
		return -errno;
	r->nopen++;
	int err = still_same(f, q);
	if (err)
		return err;
	/* sequential hint doubles the kernel's read-ahead window */
	posix_fadvise(f->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	if (r->io == QS_IO_MMAP) {
		if (f->size) {
			void *m = mmap(NULL, f->size, PROT_READ, MAP_SHARED, f->fd, 0);
			if (m == MAP_FAILED)
				return -errno;
			f->map = m;
			madvise(m, f->size, MADV_SEQUENTIAL);
		}
	} else if (!f->no_direct) {
		f->dfd = open(f->path, O_RDONLY | O_CLOEXEC | O_DIRECT);
	}
	return 0;
}

/* Closes the least recently used shards with no read in flight until
 * fewer than OPEN_MAX are open, so any number of shards needs a handful
 * of descriptors. */
static void close_idle(struct qs_reader *r, size_t keep)
{
	while (r->nopen >= OPEN_MAX) {
		struct shard_file *victim = NULL;
		for (size_t i = 0; i < r->nfiles; i++) {
			struct shard_file *f = &r->files[i];
			if (i == keep || f->fd < 0 || f->inflight)
				continue;
			if (!victim || f->last_use < victim->last_use)
				victim = f;
		}
		if (!victim)
			return;
		close_file(victim);
		r->nopen--;
	}
}

/* mmap: a shard truncated under the mapping faults with SIGBUS when the
 * copy touches a page past its new end.  The copy runs with a per-thread
 * jump target the handler returns to, turning the signal into an error. */
static __thread sigjmp_buf *bus_target;

static void on_sigbus(int sig, siginfo_t *info, void *ctx)
{
	(void)info;
	(void)ctx;
	if (bus_target)
		siglongjmp(*bus_target, 1);
	/* not a guarded copy: the default action, as without the handler */
	signal(sig, SIG_DFL);
	raise(sig);
}

static int install_bus_handler(struct qs_reader *r)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &r->old_bus) != 0)
		return -errno;
	r->bus_handler = true;
	return 0;
}

/* memcpy from a mapping; -QS_EFORMAT when the file ended under it. */
static int guarded_copy(void *dst, const void *src, size_t len)
{
	sigjmp_buf here;
	volatile int faulted = 0;
	if (sigsetjmp(here, 1) == 0) {
		bus_target = &here;
		memcpy(dst, src, len);
	} else {
		faulted = 1;
	}
	bus_target = NULL;
	return faulted ? -QS_EFORMAT : 0;
}

/* The window is not registered with io_uring (IORING_REGISTER_BUFFERS):
 * registering pins every page of it at once, which made RSS equal to the
 * whole window from the first tensor and cost ~2 s per 4 GiB before the
 * first read (measured on the tiny preset: 2.3 s vs 0.2 s).  Unregistered
 * O_DIRECT reads pin only the pages of each request while it runs. */
static int setup_uring(struct qs_reader *r, unsigned depth)
{
	int rc = io_uring_queue_init(depth, &r->ring, 0);
	if (rc < 0)
		return rc;
	r->ring_ok = true;
	return 0;
}

int qs_reader_open(const struct qs_checkpoint *ck, enum qs_io_backend io, unsigned depth,
		   struct qs_reader **out,
		   enum qs_io_backend *used, char *notice, size_t notice_len,
		   struct qs_diag *diag)
{
	struct qs_reader *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	notice[0] = '\0';
	r->io = io == QS_IO_AUTO ? QS_IO_URING : io;
	r->depth = depth ? depth : 8;
	(void)diag;
	int rc = open_files(r, ck);
	if (rc < 0)
		goto fail;
	if (r->io == QS_IO_URING) {
		rc = setup_uring(r, r->depth);
		if (rc == -ENOSYS || rc == -EPERM || rc == -EACCES) {
			snprintf(notice, notice_len,
				 "io_uring unavailable (%s), reading with pread", strerror(-rc));
			r->io = QS_IO_PREAD;
		} else if (rc < 0) {
			qs_diag_set(diag, rc, "io_uring setup failed: %s", strerror(-rc));
			goto fail;
		}
	}
	if (r->io == QS_IO_MMAP && (rc = install_bus_handler(r)) < 0) {
		qs_diag_set(diag, rc, "cannot install a SIGBUS handler for mmap: %s",
			    strerror(-rc));
		goto fail;
	}
	*used = r->io;
	*out = r;
	return 0;
fail:
	qs_reader_free(r);
	return rc;
}

void qs_reader_free(struct qs_reader *r)
{
	if (!r)
		return;
	if (r->ring_ok)
		io_uring_queue_exit(&r->ring);
	for (size_t i = 0; i < r->nfiles; i++)
		close_file(&r->files[i]);
	if (r->bus_handler)
		sigaction(SIGBUS, &r->old_bus, NULL);
	free(r->files);
	free(r->ready);
	free(r);
}

/* Sets the range actually read: whole aligned blocks for O_DIRECT. */
static void plan_range(struct qs_reader *r, struct qs_read_req *q)
{
	struct shard_file *f = &r->files[q->shard];
	q->direct = f->dfd >= 0;
	if (q->direct) {
		q->rd_off = align_down(q->offset);
		q->rd_len = align_up(q->offset + q->len) - q->rd_off;
	} else {
		q->rd_off = q->offset;
		q->rd_len = q->len;
	}
	q->rd_done = 0;
	q->data = q->buf + (q->offset - q->rd_off);
	q->result = 0;
}

/* Bytes of the read range that must arrive: O_DIRECT may stop short at
 * the end of the file, past the wanted bytes. */
static uint64_t needed(const struct qs_read_req *q)
{
	return q->offset + q->len - q->rd_off;
}

static void drop_cache(struct qs_reader *r, const struct qs_read_req *q)
{
	if (!q->direct)
		posix_fadvise(r->files[q->shard].fd, (off_t)q->offset, (off_t)q->len,
			      POSIX_FADV_DONTNEED);
}

static int push_ready(struct qs_reader *r, struct qs_read_req *q)
{
	if (r->nready == r->capready) {
		size_t cap = r->capready ? r->capready * 2 : 16;
		struct qs_read_req **n = realloc(r->ready, cap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		r->ready = n;
		r->capready = cap;
	}
	r->ready[r->nready++] = q;
	return 0;
}

static int read_sync(struct qs_reader *r, struct qs_read_req *q)
{
	struct shard_file *f = &r->files[q->shard];
	if (r->io == QS_IO_MMAP) {
		int err = still_same(f, q);
		if (err)
			return err;
		if (q->len && guarded_copy(q->data, f->map + q->offset, q->len) != 0)
			return -QS_EFORMAT;
		/* drop our mapping's pages and the page cache behind them */
		uint64_t lo = align_down(q->offset);
		madvise(f->map + lo, q->offset + q->len - lo, MADV_DONTNEED);
		drop_cache(r, q);
		return still_same(f, q);
	}
	while (q->rd_done < needed(q)) {
		int fd = q->direct ? f->dfd : f->fd;
		ssize_t n = pread(fd, q->buf + q->rd_done, q->rd_len - q->rd_done,
				  (off_t)(q->rd_off + q->rd_done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && q->direct) {
			/* the file system refuses O_DIRECT: buffered from now on */
			close(f->dfd);
			f->dfd = -1;
			f->no_direct = true;
			plan_range(r, q);
			continue;
		}
		if (n < 0)
			return -errno;
		if (n == 0)
			return -QS_EFORMAT;
		q->rd_done += (uint64_t)n;
	}
	drop_cache(r, q);
	return still_same(f, q);
}

static int uring_queue(struct qs_reader *r, struct qs_read_req *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	if (!sqe) {
		io_uring_submit(&r->ring);
		sqe = io_uring_get_sqe(&r->ring);
		if (!sqe)
			return -EBUSY;
	}
	struct shard_file *f = &r->files[q->shard];
	int fd = q->direct ? f->dfd : f->fd;
	uint8_t *dst = q->buf + q->rd_done;
	/* one SQE reads at most 1 GiB; a short read resubmits the rest */
	unsigned len = (unsigned)(q->rd_len - q->rd_done < (1u << 30) ? q->rd_len - q->rd_done
								      : (1u << 30));
	io_uring_prep_read(sqe, fd, dst, len, q->rd_off + q->rd_done);
	io_uring_sqe_set_data(sqe, q);
	return 0;
}

int qs_reader_submit(struct qs_reader *r, struct qs_read_req *q)
{
	q->why = NULL;
	if (r->files[q->shard].fd < 0)
		close_idle(r, q->shard);
	int rc = ensure_open(r, q);
	if (rc < 0) {
		/* reported like a failed read: the pipeline names the shard */
		q->result = rc;
		q->data = q->buf;
		return push_ready(r, q);
	}
	plan_range(r, q);
	if (r->io != QS_IO_URING) {
		q->result = read_sync(r, q);
		return push_ready(r, q);
	}
	rc = uring_queue(r, q);
	if (rc < 0)
		return rc;
	r->inflight++;
	r->files[q->shard].inflight++;
	rc = io_uring_submit(&r->ring);
	return rc < 0 ? rc : 0;
}

unsigned qs_reader_inflight(const struct qs_reader *r)
{
	return r->inflight + (unsigned)r->nready;
}

int qs_reader_reap(struct qs_reader *r, bool wait, struct qs_read_req **done)
{
	if (r->nready) {
		*done = r->ready[0];
		memmove(r->ready, r->ready + 1, (r->nready - 1) * sizeof(*r->ready));
		r->nready--;
		return 1;
	}
	while (r->io == QS_IO_URING && r->inflight) {
		struct io_uring_cqe *cqe;
		int rc = wait ? io_uring_wait_cqe(&r->ring, &cqe) : io_uring_peek_cqe(&r->ring, &cqe);
		if (rc == -EAGAIN && !wait)
			return 0;
		if (rc == -EINTR)
			continue;
		if (rc < 0)
			return rc;
		struct qs_read_req *q = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
		if (res == -EINVAL && q->direct) {
			/* no O_DIRECT on this file system: retry buffered */
			struct shard_file *f = &r->files[q->shard];
			if (f->dfd >= 0) {
				close(f->dfd);
				f->dfd = -1;
			}
			f->no_direct = true;
			plan_range(r, q);
			res = uring_queue(r, q);
			if (res == 0)
				res = io_uring_submit(&r->ring);
			if (res < 0) {
				r->inflight--;
				r->files[q->shard].inflight--;
				q->result = res;
				*done = q;
				return 1;
			}
			continue;
		}
		if (res == -EAGAIN || res == -EINTR)
			res = 0;  /* resubmit the remainder below */
		else if (res < 0) {
			r->inflight--;
			r->files[q->shard].inflight--;
			q->result = res;
			*done = q;
			return 1;
		} else if (res == 0) {
			r->inflight--;
			r->files[q->shard].inflight--;
			q->result = -QS_EFORMAT;  /* the file ended early */
			*done = q;
			return 1;
		}
		q->rd_done += (uint64_t)res;
		if (q->rd_done < needed(q)) {
			/* short read: continue where it stopped */
			int qr = uring_queue(r, q);
			if (qr == 0)
				qr = io_uring_submit(&r->ring);
			if (qr < 0) {
				r->inflight--;
				r->files[q->shard].inflight--;
				q->result = qr;
				*done = q;
				return 1;
			}
			continue;
		}
		r->inflight--;
		r->files[q->shard].inflight--;
		drop_cache(r, q);
		q->result = still_same(&r->files[q->shard], q);
		*done = q;
		return 1;
	}
	return 0;
}
