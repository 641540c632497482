/* pipeline.c - reader thread, worker threads and the in-order writer.
 *
 * A chunk's life: the reader takes its whole footprint from the window (in
 * plan order), reads the source bytes into it and queues it for the
 * workers; a worker converts, quantizes, compresses and hashes it; the
 * writer, walking the plan in order, waits for it, appends its frame, feeds
 * its source bytes to the tensor's checksum and frees its memory.  Since
 * memory is taken and returned in the same order, the window is a FIFO ring
 * and the output bytes depend on nothing but the plan.
 *
 * A calibration-aware tensor's scheme state (tensor_prep.h) lives in the
 * window's state area: the reader takes it before the tensor's first read
 * and queues a preparation job ahead of the chunks; a worker computes it
 * and the worker that quantizes the last chunk releases it, so neither the
 * reader nor the next tensor waits for the writer.
 */
#include "pipeline.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_initStaticCCtx, ZSTD_estimateCCtxSize_usingCParams */
#include <zstd.h>

#include "decode_scalar.h"
#include "kernels.h"
#include "reader.h"
#include "scaled_source.h"
#include "tensor_prep.h"
#include "util.h"
#include "window.h"

enum job_state { JOB_READING, JOB_QUEUED, JOB_DONE };

struct job {
	struct job *next_order;  /* writer's FIFO (plan order) */
	struct job *next_work;   /* workers' FIFO */
	size_t tensor;
	uint32_t chunk;
	uint64_t rows;
	struct qs_window_span span;
	struct qs_read_req req;
	struct qs_read_req aux;  /* the companion's rows (plan.h), if any */
	unsigned reads_pending;  /* 1, or 2 with a companion */
	uint8_t *input;          /* source bytes, aligned for the dtype */
	uint8_t *aux_data;       /* companion bytes, aligned for its dtype */
	uint8_t *work, *payload, *compressed, *scratch;
	uint64_t payload_size, compressed_cap, frame_size;
	uint64_t payload_xxh3;
	/* a chunk before a part's piece of a split tensor: read only so the
	 * tensor's source checksum covers every row (parts.h) */
	bool hash_only;
	/* its worker fed the whole chunk to the tensor's source checksum
	 * (struct src_slot); otherwise the writer does */
	bool src_hashed;
	/* the tensor's preparation (tensor_prep.h): on the workers' queue
	 * only, never the writer's */
	bool prepare;
	struct prep_slot *slot;  /* the tensor's (expert's) state, or NULL */
	enum job_state state;
	int rc;
	struct qs_diag diag;
};

/* The source checksum of a tensor (an XXH3 stream over its bytes in row
 * order), fed by whoever is at its front: the worker of chunk `front` while
 * that chunk is in flight, a row block at a time just before quantizing it
 * (the bytes are then read from memory once, issue 16), or the writer for
 * a chunk whose worker finished before the chunks ahead of it were hashed.
 * front = tensor << 32 | chunk is stored (release) after the last update
 * of a chunk, so whoever loads it (acquire) may continue the stream.
 * Tensor ti uses slot ti % QS_SRC_SLOTS: qs_pipeline_run starts the
 * first QS_SRC_SLOTS tensors' slots, and the writer, at tensor ti, hands
 * the slot of tensor ti - 1 (digested) to tensor ti + QS_SRC_SLOTS - 1. */
#define QS_SRC_SLOTS 8
struct src_slot {
	XXH3_state_t *st;
	_Atomic uint64_t front;
};

static uint64_t src_key(size_t ti, uint32_t c)
{
	return (uint64_t)ti << 32 | c;
}

/* One preparation: a tensor's state (with per_expert, one expert's), the
 * job that computes it and what it computes (prepare_state). */
struct prep_slot {
	struct qs_tensor_prep tp;
	struct job job;
	struct pipeline *p;
	size_t tensor;
	uint64_t expert;          /* UINT64_MAX unless per_expert */
	struct prep_slot *next;   /* every slot of the run, freed at its end */
};

struct pipeline {
	const struct qs_pipeline_args *a;
	const struct qs_kernels *k;
	struct qs_window window;
	struct qs_reader *reader;

	pthread_mutex_t lock;
	pthread_cond_t changed;    /* any job state change, queue push, stop */
	struct job *order_head, *order_tail;
	struct job *work_head, *work_tail;
	bool reader_done;
	bool stopping;             /* error or shutdown: everybody leaves */
	/* Per-tensor scheme state (plan.h's prep_total bytes of the window's
	 * state area), and each tensor's preparation job, by tensor index */
	struct prep_slot *slots;
	struct qs_prep_sync sync;
	pthread_mutex_t notice_lock;
	/* The compression contexts: fewer than the workers when --memory's
	 * share for them holds fewer; a worker borrows one per frame. */
	ZSTD_CCtx **cctx_free;
	unsigned ncctx_free;
	pthread_cond_t cctx_returned;
	int reader_rc;
	struct qs_diag reader_diag;
	uint64_t bytes_read;
	struct qs_stage_seconds stages;  /* under lock; each thread adds its own at exit */
	struct src_slot src[QS_SRC_SLOTS];
	double reader_wait;              /* the reader thread's (only it reaps and submits) */
};

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU time of the calling thread: the compute stages are charged what they
 * computed, not the time a busy machine kept them off a core. */
static double thread_cpu_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void add_stages(struct pipeline *p, const struct qs_stage_seconds *s)
{
	pthread_mutex_lock(&p->lock);
	p->stages.read_wait += s->read_wait;
	p->stages.quantize += s->quantize;
	p->stages.compress += s->compress;
	p->stages.hash += s->hash;
	p->stages.write += s->write;
	pthread_mutex_unlock(&p->lock);
}

static void stop_all(struct pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->changed);
	pthread_cond_broadcast(&p->cctx_returned);
	pthread_mutex_unlock(&p->lock);
	qs_window_close(&p->window);
}

/* The tensors this run converts end here (a --part slice ends earlier). */
static size_t tensors_end(const struct qs_pipeline_args *a)
{
	return a->slice ? a->slice->tensor_end : a->plan->ntensors;
}

/* Chunks [*begin, *end) of tensor ti are converted, from *read_from on
 * they are read (parts.h); all of them without --part. */
static void tensor_chunks(const struct qs_pipeline_args *a, size_t ti, uint32_t *begin,
			  uint32_t *end, uint32_t *read_from)
{
	if (a->slice) {
		qs_part_tensor_chunks(a->slice, a->plan, ti, begin, end, read_from);
		return;
	}
	*begin = *read_from = 0;
	*end = a->plan->tensors[ti].nchunks;
}

/* Starts tensor ti's source checksum in its slot (a no-op past the end). */
static void src_slot_reset(struct pipeline *p, size_t ti)
{
	if (ti >= tensors_end(p->a))
		return;
	uint32_t cbegin, cend, cread;
	tensor_chunks(p->a, ti, &cbegin, &cend, &cread);
	struct src_slot *sl = &p->src[ti % QS_SRC_SLOTS];
	XXH3_64bits_reset(sl->st);
	atomic_store_explicit(&sl->front, src_key(ti, cread), memory_order_release);
}

/* ------------------------------------------------------------ reader */

static void carve(struct job *j, const struct qs_plan_tensor *t)
{
	struct qs_chunk_footprint fp;
	qs_plan_chunk_buffers(t, j->rows, &fp);
	uint8_t *at = j->span.ptr;
	j->req.buf = at;
	at += fp.input;
	j->aux.buf = fp.aux ? at : NULL;
	at += fp.aux;
	j->work = fp.work ? at : NULL;
	at += fp.work;
	j->payload = fp.payload ? at : NULL;
	at += fp.payload;
	j->compressed = at;
	j->compressed_cap = fp.compressed;
	at += fp.compressed;
	j->scratch = fp.scratch ? at : NULL;
}

/* Source data at an offset that is not a multiple of the element size is
 * moved to the (aligned) buffer start, so kernels see aligned elements. */
static uint8_t *aligned_data(struct qs_read_req *q, enum qs_dtype dt)
{
	unsigned esize = qs_dtype_size(dt);
	if (esize > 1 && ((uintptr_t)q->data % esize) != 0) {
		memmove(q->buf, q->data, q->len);
		return q->buf;
	}
	return q->data;
}

/* Appends j to the workers' FIFO.  Caller holds the lock. */
static void queue_work(struct pipeline *p, struct job *j)
{
	if (p->work_tail)
		p->work_tail->next_work = j;
	else
		p->work_head = j;
	p->work_tail = j;
}

/* Hands a job to the workers once all its reads are done. */
static void read_done(struct pipeline *p, struct qs_read_req *q)
{
	struct job *j = q->tag;
	const struct qs_plan_tensor *t = &p->a->plan->tensors[j->tensor];
	const struct qs_st_tensor *src = q == &j->aux ? t->companion : t->src;
	if (q == &j->aux)
		j->aux_data = aligned_data(q, src->dtype);
	else
		j->input = aligned_data(q, src->dtype);
	pthread_mutex_lock(&p->lock);
	if (q->result < 0 && j->rc == 0) {
		j->rc = q->result;
		const char *fname = p->a->ckpt->shards[src->shard].name;
		if (q->result == -QS_EFORMAT)
			qs_diag_set(&j->diag, q->result,
				    "'%s': tensor '%s': file ended before the tensor's data "
				    "(truncated while being read?)",
				    fname, src->name);
		else if (q->result == -QS_ESOURCE)
			qs_diag_set(&j->diag, q->result,
				    "'%s': changed while being read (%s) at tensor '%s': the output "
				    "would mix old and new bytes; the .partial keeps only tensors "
				    "read before the change",
				    fname, q->why ? q->why : "?", src->name);
		else
			qs_diag_set(&j->diag, q->result, "'%s': tensor '%s': read failed: %s",
				    fname, src->name, strerror(-q->result));
	}
	if (q->result >= 0)
		p->bytes_read += q->len;
	if (--j->reads_pending > 0) {
		/* the other read of this job is still in flight */
	} else if (j->rc < 0) {
		j->state = JOB_DONE;
	} else {
		j->state = JOB_QUEUED;
		queue_work(p, j);
	}
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
}

static int reap_one(struct pipeline *p, bool wait)
{
	struct qs_read_req *q;
	double t0 = wait ? now_seconds() : 0;
	int rc = qs_reader_reap(p->reader, wait, &q);
	if (wait)
		p->reader_wait += now_seconds() - t0;
	if (rc > 0)
		read_done(p, q);
	return rc;
}

static bool should_stop(struct pipeline *p)
{
	volatile int *stop = p->a->opts->stop;
	bool s;
	pthread_mutex_lock(&p->lock);
	s = p->stopping;
	pthread_mutex_unlock(&p->lock);
	return s || (stop && *stop);
}

static void notice(struct pipeline *p, const char *text)
{
	const struct qs_convert_opts *o = p->a->opts;
	if (!o->progress)
		return;
	struct qs_progress pr = {.notice = text};
	pthread_mutex_lock(&p->notice_lock);
	o->progress(&pr, o->progress_user);
	pthread_mutex_unlock(&p->notice_lock);
}

/* What a preparation computes: the tensor's statistics and its scheme's
 * prepare, into the state memory buf (qs_prep_fn). */
static int prepare_state(void *arg, uint8_t *buf, struct qs_diag *d)
{
	struct prep_slot *slot = arg;
	struct pipeline *p = slot->p;
	const struct qs_plan_tensor *t = &p->a->plan->tensors[slot->tensor];
	uint64_t expert = slot->expert;
	const char *file = p->a->ckpt->shards[t->src->shard].name;
	struct qs_tensor_stats st = {.name = t->src->name, .cols = t->cols};
	float *imp = (float *)(buf + t->prep_state);
	float *hes = (float *)(buf + t->prep_state + t->prep_importance);
	char text[1024];
	int rc;
	if (t->prep_importance) {
		rc = qs_importance_get(p->a->importance, t->src->name, t->cols, imp, d);
		if (rc < 0)
			return rc;
		if (rc == 0) {
			snprintf(text, sizeof(text),
				 "'%s': tensor '%s': no importance entry, quantizing weight-only",
				 file, t->src->name);
			notice(p, text);
		}
		st.importance = rc ? imp : NULL;
	}
	if (t->prep_hessian) {
		bool diag_only = false;
		if (t->per_expert)
			rc = qs_hessian_get_expert(p->a->hessian, t->src->name, expert,
						   t->rows / t->matrix_rows, t->cols, hes, &diag_only,
						   d);
		else
			rc = qs_hessian_get(p->a->hessian, t->src->name, t->cols, hes, &diag_only, d);
		if (rc < 0)
			return rc;
		if (rc == 0 && t->per_expert) {
			snprintf(text, sizeof(text),
				 "'%s': tensor '%s': no Hessian entry for expert %llu, quantizing "
				 "it as with H = I",
				 file, t->src->name, (unsigned long long)expert);
			notice(p, text);
		} else if (rc == 0) {
			snprintf(text, sizeof(text),
				 "'%s': tensor '%s': no Hessian entry, quantizing as with H = I",
				 file, t->src->name);
			notice(p, text);
		}
		st.hessian = rc ? hes : NULL;
		st.hessian_diag_only = diag_only;
	}
	rc = t->scheme.ops->prepare(&t->scheme, &st, buf, d);
	if (rc < 0 && !d->msg[0])
		qs_diag_set(d, rc, "'%s': tensor '%s': %s: preparation failed", file,
			    t->src->name, t->scheme.text);
	return rc;
}

/* Takes the state memory of tensor ti (with per_expert, of matrix
 * `expert`; its nchunks converted chunks) and queues its preparation for
 * the workers; *out is the slot its chunk jobs point at. */
static int start_prepare(struct pipeline *p, size_t ti, uint64_t expert, uint32_t nchunks,
			 struct prep_slot **out)
{
	const struct qs_plan_tensor *t = &p->a->plan->tensors[ti];
	int rc;
	/* Every chunk read so far is written before the tensor's chunks are
	 * taken: they then start at the beginning of the ring, so the ring
	 * pages a run touches are the most any such stretch of tensors
	 * allocates (qs_plan_memory) whatever the timing, and the peak
	 * memory convert --plan-only predicts is the one the run reaches
	 * (issue 17).  The reads must reach the workers first: only this
	 * thread reaps. */
	while (qs_reader_inflight(p->reader) > 0) {
		rc = reap_one(p, true);
		if (rc < 0)
			return rc;
	}
	if (qs_window_wait_empty(&p->window) < 0)
		return -ECANCELED;
	struct prep_slot *slot = calloc(1, sizeof(*slot));
	if (!slot)
		return -ENOMEM;
	slot->p = p;
	slot->tensor = ti;
	slot->expert = expert;
	pthread_mutex_lock(&p->lock);
	slot->next = p->slots;
	p->slots = slot;
	pthread_mutex_unlock(&p->lock);
	for (;;) {
		bool idle = qs_reader_inflight(p->reader) == 0;
		rc = qs_tensor_prep_start(&slot->tp, &p->sync, t->prep_total, nchunks, idle);
		if (rc != -EAGAIN)
			break;
		rc = reap_one(p, true);
		if (rc < 0)
			return rc;
	}
	if (rc < 0)
		return rc;
	slot->job.tensor = ti;
	slot->job.prepare = true;
	slot->job.slot = slot;
	pthread_mutex_lock(&p->lock);
	queue_work(p, &slot->job);
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
	*out = slot;
	return 0;
}

static void *reader_main(void *arg)
{
	struct pipeline *p = arg;
	const struct qs_plan *plan = p->a->plan;
	int rc = 0;
	for (size_t ti = p->a->first_tensor; ti < tensors_end(p->a) && rc >= 0; ti++) {
		const struct qs_plan_tensor *t = &plan->tensors[ti];
		uint32_t cbegin, cend, cread;
		tensor_chunks(p->a, ti, &cbegin, &cend, &cread);
		uint64_t cpm = t->nchunks ? qs_plan_chunks_per_matrix(t) : 1;
		struct prep_slot *slot = NULL;
		if (qs_plan_needs_prep(t) && cend > cbegin && !t->per_expert) {
			rc = start_prepare(p, ti, UINT64_MAX, cend - cbegin, &slot);
			if (rc < 0)
				break;
		}
		for (uint32_t c = cread; c < cend && rc >= 0; c++) {
			if (should_stop(p)) {
				rc = -ECANCELED;
				break;
			}
			/* each expert's first converted chunk: its own Hessian */
			if (qs_plan_needs_prep(t) && t->per_expert && c >= cbegin &&
			    (c == cbegin || c % cpm == 0)) {
				uint64_t last = (c / cpm + 1) * cpm;
				uint32_t n = (uint32_t)((last < cend ? last : cend) - c);
				rc = start_prepare(p, ti, c / cpm, n, &slot);
				if (rc < 0)
					break;
			}
			struct job *j = calloc(1, sizeof(*j));
			if (!j) {
				rc = -ENOMEM;
				break;
			}
			j->tensor = ti;
			j->chunk = c;
			j->hash_only = c < cbegin;
			j->slot = j->hash_only ? NULL : slot;
			j->rows = qs_plan_chunk_rows(t, c);
			struct qs_chunk_footprint fp;
			qs_plan_chunk_buffers(t, j->rows, &fp);
			/* Wait for memory only when no read is in flight;
			 * otherwise finish reads first to keep workers fed. */
			for (;;) {
				bool idle = qs_reader_inflight(p->reader) == 0;
				rc = qs_window_alloc(&p->window, fp.total, idle, &j->span);
				if (rc != -EAGAIN)
					break;
				rc = reap_one(p, true);
				if (rc < 0)
					break;
			}
			if (rc < 0) {
				free(j);
				break;
			}
			carve(j, t);
			j->req.shard = t->src->shard;
			j->req.offset = t->src->offset + qs_plan_chunk_begin(t, c) * t->row_bytes;
			j->req.len = j->rows * t->row_bytes;
			j->req.tag = j;
			j->reads_pending = 1;
			if (t->companion) {
				j->aux.shard = t->companion->shard;
				qs_plan_chunk_aux(t, c, &j->aux.offset, &j->aux.len);
				j->aux.tag = j;
				j->reads_pending = 2;
			}
			j->state = JOB_READING;
			pthread_mutex_lock(&p->lock);
			if (p->order_tail)
				p->order_tail->next_order = j;
			else
				p->order_head = j;
			p->order_tail = j;
			pthread_mutex_unlock(&p->lock);
			/* pread and mmap read inside submit */
			double t0 = now_seconds();
			rc = qs_reader_submit(p->reader, &j->req);
			if (rc >= 0 && t->companion)
				rc = qs_reader_submit(p->reader, &j->aux);
			p->reader_wait += now_seconds() - t0;
			if (rc < 0)
				break;
			/* keep the ring busy but hand over finished reads */
			while ((rc = reap_one(p, false)) > 0)
				;
		}
	}
	/* Always drain: in-flight reads target window memory. */
	while (qs_reader_inflight(p->reader) > 0) {
		int r = reap_one(p, true);
		if (r < 0) {
			if (rc >= 0)
				rc = r;
			break;
		}
	}
	struct qs_stage_seconds mine = {.read_wait = p->reader_wait};
	add_stages(p, &mine);
	pthread_mutex_lock(&p->lock);
	p->reader_done = true;
	if (rc < 0 && rc != -ECANCELED) {
		p->reader_rc = rc;
		if (!p->reader_diag.msg[0])
			qs_diag_set(&p->reader_diag, rc, "reading the checkpoint failed: %s",
				    qs_strerror(rc));
	}
	pthread_cond_broadcast(&p->changed);
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* ------------------------------------------------------------ workers */

/* The kernels' name for a source dtype (bf16, f16, else f32: the plan
 * sends no other dtype here). */
static unsigned src_kind(enum qs_dtype dt)
{
	return dt == QS_DTYPE_BF16 ? QS_SRC_KIND_BF16
	       : dt == QS_DTYPE_F16 ? QS_SRC_KIND_F16
				    : QS_SRC_KIND_F32;
}

/* Decodes to f32 and returns the NaN/Inf count, in one pass (issue 16:
 * a separate count pass walked the chunk from memory again). */
static size_t to_f32(const struct qs_kernels *k, enum qs_dtype dt, const uint8_t *in,
		     float *out, size_t n)
{
	return k->decode_checked(src_kind(dt), in, out, n);
}

/* A worker's share of its chunk's source checksum (struct src_slot). */
struct src_feed {
	struct src_slot *slot;
	uint64_t key;          /* this chunk's front */
	const uint8_t *base;   /* the chunk's source bytes */
	uint64_t total, row_bytes;
	uint64_t done;         /* bytes fed so far */
	bool owned;            /* front reached: this worker feeds the stream */
	double seconds;        /* thread CPU spent hashing */
};

/* Row blocks of this size are hashed just ahead of being quantized: they
 * stay in L2 for the quantizer. */
#define QS_SRC_FEED_BLOCK (256u << 10)

/* Feeds the stream up to byte upto (catching up from 0 the first time the
 * front reaches this chunk). */
static void src_feed_to(struct src_feed *f, uint64_t upto)
{
	if (!f->owned) {
		if (atomic_load_explicit(&f->slot->front, memory_order_acquire) != f->key)
			return;
		f->owned = true;
	}
	if (upto > f->total)
		upto = f->total;
	if (upto <= f->done)
		return;
	double t0 = thread_cpu_seconds();
	XXH3_64bits_update(f->slot->st, f->base + f->done, upto - f->done);
	f->done = upto;
	f->seconds += thread_cpu_seconds() - t0;
}

/* qs_row_hook: before row r, the block from row r on, if not fed yet. */
static void src_feed_row(void *user, uint64_t r)
{
	struct src_feed *f = user;
	uint64_t at = r * f->row_bytes;
	if (at >= f->done)
		src_feed_to(f, at + (QS_SRC_FEED_BLOCK > f->row_bytes ? QS_SRC_FEED_BLOCK
								     : f->row_bytes));
}

/* After the chunk: feed what is left if at the front (the stream is this
 * worker's only then), and pass the front on. */
static void src_feed_finish(struct src_feed *f, struct job *j, uint32_t next_chunk)
{
	src_feed_to(f, f->total);
	if (f->owned && f->done == f->total) {
		j->src_hashed = true;
		atomic_store_explicit(&f->slot->front, (f->key & ~(uint64_t)UINT32_MAX) | next_chunk,
				      memory_order_release);
	}
}

static ZSTD_CCtx *borrow_cctx(struct pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	while (!p->ncctx_free && !p->stopping)
		pthread_cond_wait(&p->cctx_returned, &p->lock);
	ZSTD_CCtx *c = p->ncctx_free ? p->cctx_free[--p->ncctx_free] : NULL;
	pthread_mutex_unlock(&p->lock);
	return c;
}

static void return_cctx(struct pipeline *p, ZSTD_CCtx *c)
{
	pthread_mutex_lock(&p->lock);
	p->cctx_free[p->ncctx_free++] = c;
	pthread_cond_signal(&p->cctx_returned);
	pthread_mutex_unlock(&p->lock);
}

/* Quantizes the chunk's weights w into its payload: 0, a scheme's
 * negative code, or 1 when the tensor's preparation failed (j->rc and
 * j->diag set). */
static int quantize_chunk(struct pipeline *p, struct job *j, const struct qs_plan_tensor *t,
			  const float *w)
{
	if (!qs_plan_needs_prep(t))
		return t->scheme.ops->quantize(&t->scheme, w, j->rows, t->cols, j->payload,
					       j->scratch);
	const uint8_t *state = NULL;
	int rc = qs_tensor_prep_get(&j->slot->tp, &p->sync, prepare_state, j->slot, &state,
				    &j->diag);
	if (rc < 0) {
		j->rc = rc;
		rc = 1;
	} else {
		rc = t->scheme.ops->quantize_prep(&t->scheme, state, w, j->rows, t->cols,
						  j->payload, j->scratch);
	}
	return rc;
}

/* A chunk of a calibration-aware tensor is past quantizing (done or
 * failed): the last one gives the tensor's state back to the window. */
static void chunk_quantized(struct pipeline *p, const struct job *j)
{
	if (j->slot)
		qs_tensor_prep_chunk_done(&j->slot->tp, &p->sync);
}

/* Runs a tensor's preparation job: computes the state unless a chunk's
 * worker already has; its failure reaches the writer through the chunks. */
static void run_prepare(struct pipeline *p, struct job *j)
{
	const uint8_t *state;
	struct qs_diag ignore;
	(void)qs_tensor_prep_get(&j->slot->tp, &p->sync, prepare_state, j->slot, &state, &ignore);
}

static void process(struct pipeline *p, struct job *j, struct qs_stage_seconds *st)
{
	double t0 = thread_cpu_seconds(), t1;
	const struct qs_plan_tensor *t = &p->a->plan->tensors[j->tensor];
	const char *fname = p->a->ckpt->shards[t->src->shard].name;
	const uint8_t *payload;
	double feed_seconds = 0;
	if (j->hash_only)
		return;
	if (t->raw) {
		payload = j->input;
		j->payload_size = j->req.len;
	} else {
		size_t n = (size_t)(j->rows * t->cols);
		float *w = (float *)j->work;
		bool allow = p->a->opts->allow_nonfinite;
		size_t bad = 0;
		int rc = 0;
		struct src_feed feed = {
			.slot = &p->src[j->tensor % QS_SRC_SLOTS],
			.key = src_key(j->tensor, j->chunk),
			.base = j->input,
			.total = j->req.len,
			.row_bytes = t->row_bytes,
		};
		struct qs_row_hook hook = {src_feed_row, &feed};
		if (qs_plan_one_pass(t)) {
			/* one pass: decode, check and quantize a group or a
			 * row at a time (w holds one row), the source checksum
			 * fed a row block ahead */
			rc = t->scheme.ops->quantize_src(&t->scheme, src_kind(t->src->dtype),
							 j->input, j->rows, t->cols, allow,
							 j->payload, j->scratch, w, &bad, &hook);
			src_feed_finish(&feed, j, j->chunk + 1);
			feed_seconds = feed.seconds;
		} else {
			if (t->companion) {
				qs_scaled_dequant_rows(&t->pairing, t->src->dtype,
						    t->companion->dtype, j->input, j->aux_data,
						    qs_plan_chunk_begin(t, j->chunk), j->rows,
						    t->cols, w);
				bad = p->k->count_nonfinite(w, n);
			} else {
				/* row blocks: checksum, then decode from cache */
				size_t esz = t->src->dtype == QS_DTYPE_F32 ? 4 : 2;
				uint64_t rb = t->row_bytes ? t->row_bytes : 1;
				uint64_t step = QS_SRC_FEED_BLOCK / rb + 1;
				for (uint64_t r = 0; r < j->rows; r += step) {
					uint64_t nr = j->rows - r < step ? j->rows - r : step;
					src_feed_row(&feed, r);
					bad += to_f32(p->k, t->src->dtype,
						      j->input + r * t->cols * esz, w + r * t->cols,
						      (size_t)(nr * t->cols));
				}
				src_feed_finish(&feed, j, j->chunk + 1);
			}
			feed_seconds = feed.seconds;
			if (bad && allow)
				qs_sanitize_scalar(w, n);
			if (!bad || allow)
				rc = quantize_chunk(p, j, t, w);
		}
		if (bad && !allow) {
			uint64_t r0 = qs_plan_chunk_begin(t, j->chunk);
			j->rc = qs_diag_set(&j->diag, -QS_ENONFINITE,
					    "'%s': tensor '%s' holds %zu NaN/Inf values in rows "
					    "%llu-%llu (add --allow-nonfinite --resume to quantize it anyway)",
					    fname, t->src->name, bad, (unsigned long long)r0,
					    (unsigned long long)(r0 + j->rows - 1));
			chunk_quantized(p, j);
			return;
		}
		chunk_quantized(p, j);
		if (rc == 1)
			return;  /* the preparation failed: j->rc and j->diag say why */
		if (rc < 0) {
			j->rc = qs_diag_set(&j->diag, rc,
					    "'%s': tensor '%s': %s: values out of the range the "
					    "scheme encodes (keep it with --keep)",
					    fname, t->src->name, t->scheme.text);
			return;
		}
		payload = j->payload;
		j->payload_size = t->scheme.ops->payload_size(&t->scheme, j->rows, t->cols);
	}
	t1 = thread_cpu_seconds();
	st->quantize += t1 - t0 - feed_seconds;
	st->hash += feed_seconds;
	ZSTD_CCtx *cctx = borrow_cctx(p);
	if (!cctx) {
		j->rc = -QS_EINTERRUPTED;  /* stopping: the writer reports why */
		return;
	}
	size_t z = ZSTD_compress2(cctx, j->compressed, j->compressed_cap, payload,
				  j->payload_size);
	return_cctx(p, cctx);
	t0 = thread_cpu_seconds();
	st->compress += t0 - t1;
	if (ZSTD_isError(z)) {
		j->rc = qs_diag_set(&j->diag, -QS_EFORMAT, "'%s': tensor '%s': zstd: %s", fname,
				    t->src->name, ZSTD_getErrorName(z));
		return;
	}
	j->frame_size = z;
	j->payload_xxh3 = XXH3_64bits(payload, j->payload_size);
	st->hash += thread_cpu_seconds() - t0;
}

static void *worker_main(void *arg)
{
	struct pipeline *p = arg;
	struct qs_stage_seconds mine = {0};
	for (;;) {
		pthread_mutex_lock(&p->lock);
		while (!p->work_head && !p->stopping && !p->reader_done)
			pthread_cond_wait(&p->changed, &p->lock);
		struct job *j = p->work_head;
		if (!j || p->stopping) {
			pthread_mutex_unlock(&p->lock);
			break;
		}
		p->work_head = j->next_work;
		if (!p->work_head)
			p->work_tail = NULL;
		pthread_mutex_unlock(&p->lock);

		if (j->prepare) {
			run_prepare(p, j);
			continue;  /* not the writer's: nothing to mark done */
		}
		process(p, j, &mine);

		pthread_mutex_lock(&p->lock);
		j->state = JOB_DONE;
		pthread_cond_broadcast(&p->changed);
		pthread_mutex_unlock(&p->lock);
	}
	add_stages(p, &mine);
	return NULL;
}

/* ------------------------------------------------------------ writer */

/* Waits for the next job in plan order to be done.  NULL when the reader
 * stopped before producing it (interrupt or read failure). */
static struct job *next_done(struct pipeline *p)
{
	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct job *j = p->order_head;
		if (j && j->state == JOB_DONE) {
			p->order_head = j->next_order;
			if (!p->order_head)
				p->order_tail = NULL;
			pthread_mutex_unlock(&p->lock);
			return j;
		}
		if ((!j && p->reader_done) || p->stopping) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		pthread_cond_wait(&p->changed, &p->lock);
	}
}

static void report(struct pipeline *p, uint64_t tensors_done, double t0, const char *name)
{
	const struct qs_convert_opts *o = p->a->opts;
	if (!o->progress)
		return;
	struct qs_progress pr = {0};
	pr.tensors_done = tensors_done;
	pr.tensors_total = p->a->plan->ntensors;
	if (p->a->slice) {
		pr.tensors_done -= p->a->slice->tensor_begin;
		pr.tensors_total = p->a->slice->tensor_end - p->a->slice->tensor_begin;
	}
	pthread_mutex_lock(&p->lock);
	pr.bytes_read = p->bytes_read;
	pthread_mutex_unlock(&p->lock);
	pr.bytes_total = qs_checkpoint_bytes(p->a->ckpt);
	if (p->a->slice)
		pr.bytes_total = p->a->slice->source_bytes + p->a->slice->hash_bytes;
	pr.bytes_written = qs_cwriter_size(p->a->writer);
	pr.seconds = now_seconds() - t0;
	pr.tensor = name;
	o->progress(&pr, o->progress_user);
}

/* Feeds the companion's bytes of chunk c (block scales and MXFP4 scales:
 * chunks read disjoint, consecutive rows of them; a per-tensor scale is
 * hashed once) to its checksum. */
static void hash_companion(XXH3_state_t *aux_hash, const struct qs_plan_tensor *t,
			   const struct job *j, uint32_t c)
{
	if (t->companion && (t->pairing.enc != QS_SRC_FP8_TENSOR || c == 0))
		XXH3_64bits_update(aux_hash, j->aux_data, j->aux.len);
}

static int write_tensors(struct pipeline *p, struct qs_diag *diag)
{
	const struct qs_plan *plan = p->a->plan;
	double t0 = now_seconds();
	int rc = 0;
	XXH3_state_t *aux_hash = XXH3_createState();
	struct qs_stage_seconds mine = {0};
	struct qs_chunk_entry *chunks = NULL;
	size_t cap = 0;
	if (!aux_hash)
		return -ENOMEM;
	for (size_t ti = p->a->first_tensor; ti < tensors_end(p->a); ti++) {
		const struct qs_plan_tensor *t = &plan->tensors[ti];
		/* tensor ti - 1 is digested: its slot goes to the tensor
		 * QS_SRC_SLOTS - 1 ahead of this one */
		if (ti > p->a->first_tensor)
			src_slot_reset(p, ti + QS_SRC_SLOTS - 1);
		struct src_slot *sl = &p->src[ti % QS_SRC_SLOTS];
		XXH3_state_t *hash = sl->st;
		if (t->consumed)
			continue;  /* read and recorded with its weight */
		uint32_t cbegin, cend, cread;
		tensor_chunks(p->a, ti, &cbegin, &cend, &cread);
		if (t->nchunks > cap) {
			struct qs_chunk_entry *n = realloc(chunks, t->nchunks * sizeof(*n));
			if (!n) {
				rc = -ENOMEM;
				break;
			}
			chunks = n;
			cap = t->nchunks;
		}
		XXH3_64bits_reset(aux_hash);
		for (uint32_t c = cread; c < cend; c++) {
			struct job *j = next_done(p);
			if (!j) {
				pthread_mutex_lock(&p->lock);
				rc = p->reader_rc;
				if (rc < 0)
					*diag = p->reader_diag;
				pthread_mutex_unlock(&p->lock);
				if (rc == 0)
					rc = -QS_EINTERRUPTED;
				goto out;
			}
			if (j->rc < 0) {
				rc = j->rc;
				*diag = j->diag;
				qs_window_free(&p->window, &j->span);
				free(j);
				goto out;
			}
			if (j->hash_only) {
				XXH3_64bits_update(hash, j->input, j->req.len);
				atomic_store_explicit(&sl->front, src_key(ti, c + 1),
						      memory_order_release);
				hash_companion(aux_hash, t, j, c);
				qs_window_free(&p->window, &j->span);
				free(j);
				continue;
			}
			uint64_t off;
			double w0 = now_seconds();
			rc = qs_cwriter_frame(p->a->writer, j->compressed, j->frame_size, &off, diag);
			mine.write += now_seconds() - w0;
			if (rc == 0) {
				double h0 = thread_cpu_seconds();
				if (!j->src_hashed) {
					/* its worker never reached the front */
					XXH3_64bits_update(hash, j->input, j->req.len);
					atomic_store_explicit(&sl->front, src_key(ti, c + 1),
							      memory_order_release);
				}
				hash_companion(aux_hash, t, j, c);
				chunks[c - cbegin] = (struct qs_chunk_entry){
					.frame_offset = off,
					.frame_size = j->frame_size,
					.payload_size = j->payload_size,
					.row_begin = qs_plan_chunk_begin(t, c),
					.row_count = j->rows,
					.payload_xxh3 = j->payload_xxh3,
				};
				mine.hash += thread_cpu_seconds() - h0;
			}
			qs_window_free(&p->window, &j->span);
			free(j);
			if (rc < 0)
				goto out;
		}
		const struct qs_st_tensor *s = t->src;
		struct qs_record rec = {0};
		rec.name = s->name;
		rec.shard = p->a->ckpt->shards[s->shard].name;
		rec.dtype = s->dtype;
		rec.ndim = s->ndim;
		memcpy(rec.shape, s->shape, sizeof(rec.shape));
		rec.scheme = t->raw ? (char *)"raw" : (char *)t->scheme.text;
		rec.source_xxh3 = t->companion
					  ? qs_paired_source_xxh3(XXH3_64bits_digest(hash),
								  XXH3_64bits_digest(aux_hash))
					  : XXH3_64bits_digest(hash);
		rec.nchunks = cend - cbegin;
		/* a piece that leaves rows to the next part cannot know the
		 * checksum of the whole source; the piece that ends it does */
		if (cend < t->nchunks)
			rec.source_xxh3 = 0;
		rec.chunks = chunks;
		double r0 = now_seconds();
		rc = qs_cwriter_record(p->a->writer, &rec, diag);
		mine.write += now_seconds() - r0;
		if (rc < 0)
			goto out;
		report(p, ti + 1, t0, s->name);
		/* a stop request takes effect at the next tensor boundary, so
		 * every written record is complete */
		volatile int *stop = p->a->opts->stop;
		if (stop && *stop && ti + 1 < tensors_end(p->a)) {
			rc = -QS_EINTERRUPTED;
			goto out;
		}
	}
out:
	add_stages(p, &mine);
	free(chunks);
	XXH3_freeState(aux_hash);
	return rc;
}

static void free_jobs(struct pipeline *p)
{
	struct job *j = p->order_head;
	while (j) {
		struct job *next = j->next_order;
		free(j);
		j = next;
	}
	p->order_head = p->order_tail = NULL;
}

/* ZSTD_compress2 picks its parameters from the level and each frame's size,
 * from one row of zstd's table per size tier (up to 16 KiB, 128 KiB,
 * 256 KiB, beyond) and then shrinks the window and tables to the size.
 * Within a tier a larger frame never needs less, so the largest need at
 * each tier's top (capped at the largest frame) bounds every frame's; a
 * static context of this size never runs out (zstd would fail the frame
 * with "Allocation error" rather than grow). */
uint64_t qs_pipeline_cctx_bytes(int level, uint64_t max_payload)
{
	static const uint64_t tier_tops[] = {16u << 10, 128u << 10, 256u << 10, UINT64_MAX};
	uint64_t top = max_payload ? max_payload : 1, need = 0;
	for (size_t i = 0; i < sizeof(tier_tops) / sizeof(tier_tops[0]); i++) {
		uint64_t src = tier_tops[i] < top ? tier_tops[i] : top;
		size_t n = ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(level, src, 0));
		if (n > need)
			need = n;
	}
	return need;
}

uint64_t qs_pipeline_cctx_stride(int level, uint64_t max_payload)
{
	uint64_t a = QS_WINDOW_STATE_ALIGN;
	return (qs_pipeline_cctx_bytes(level, max_payload) + a - 1) / a * a;
}

/* Carves the compression contexts from the window's fixed area. */
static int make_contexts(struct pipeline *p, unsigned n, uint64_t bytes)
{
	for (; p->ncctx_free < n; p->ncctx_free++) {
		void *ws = qs_window_carve(&p->window, bytes, QS_WINDOW_STATE_ALIGN);
		ZSTD_CCtx *c = ws ? ZSTD_initStaticCCtx(ws, (size_t)bytes) : NULL;
		if (!c)
			return -ENOMEM;
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, p->a->level);
		ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
		p->cctx_free[p->ncctx_free] = c;
	}
	return 0;
}

int qs_pipeline_run(const struct qs_pipeline_args *a, struct qs_pipeline_stats *stats,
		    struct qs_diag *diag)
{
	struct pipeline p;
	memset(&p, 0, sizeof(p));
	p.a = a;
	p.k = qs_kernels_get();
	memset(stats, 0, sizeof(*stats));
	unsigned nworkers = a->threads ? a->threads : 1;
	unsigned ncctx = a->contexts && a->contexts < nworkers ? a->contexts : nworkers;
	/* one mapping for the chunks, the largest tensor state and the
	 * contexts: --memory's shares of them (plan.h) */
	uint64_t cctx_stride = qs_pipeline_cctx_stride(a->level, a->plan->max_payload);
	uint64_t state_bytes = a->plan->max_prep;
	int rc = qs_window_init(&p.window, a->window_bytes, state_bytes, ncctx * cctx_stride);
	if (rc < 0)
		return qs_diag_set(diag, rc, "cannot map a memory window of %llu MiB: %s",
				   (unsigned long long)(qs_window_mapping_size(
								a->window_bytes, state_bytes,
								ncctx * cctx_stride) >> 20),
				   strerror(-rc));
	char io_notice[256];
	rc = qs_reader_open(a->ckpt, a->opts->io, 8, &p.reader,
			    &stats->io_used, io_notice, sizeof(io_notice), diag);
	if (rc < 0) {
		qs_window_release(&p.window);
		return rc;
	}
	if (io_notice[0] && a->opts->progress) {
		struct qs_progress pr = {.notice = io_notice,
					 .tensors_total = a->plan->ntensors,
					 .bytes_total = qs_checkpoint_bytes(a->ckpt)};
		a->opts->progress(&pr, a->opts->progress_user);
	}
	pthread_mutex_init(&p.lock, NULL);
	pthread_cond_init(&p.changed, NULL);
	pthread_mutex_init(&p.notice_lock, NULL);
	pthread_cond_init(&p.cctx_returned, NULL);
	p.sync = (struct qs_prep_sync){.lock = &p.lock, .changed = &p.changed,
				       .window = &p.window};

	pthread_t reader, *workers = calloc(nworkers, sizeof(*workers));
	unsigned started = 0;
	bool reader_started = false;
	p.cctx_free = calloc(ncctx, sizeof(*p.cctx_free));
	if (!workers || !p.cctx_free) {
		rc = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < QS_SRC_SLOTS; i++) {
		p.src[i].st = XXH3_createState();
		atomic_init(&p.src[i].front, UINT64_MAX);
		if (!p.src[i].st) {
			rc = -ENOMEM;
			goto out;
		}
	}
	for (size_t i = 0; i < QS_SRC_SLOTS; i++)
		src_slot_reset(&p, a->first_tensor + i);
	rc = make_contexts(&p, ncctx, cctx_stride);
	if (rc < 0) {
		qs_diag_set(diag, rc, "cannot set up %u zstd contexts of %llu KiB at --level %d",
			    ncctx, (unsigned long long)(cctx_stride >> 10), a->level);
		goto out;
	}
	if (pthread_create(&reader, NULL, reader_main, &p) != 0) {
		rc = qs_diag_set(diag, -EAGAIN, "cannot start the reader thread");
		goto out;
	}
	reader_started = true;
	for (; started < nworkers; started++) {
		if (pthread_create(&workers[started], NULL, worker_main, &p) != 0) {
			rc = qs_diag_set(diag, -EAGAIN, "cannot start worker threads");
			break;
		}
	}
	if (rc == 0)
		rc = write_tensors(&p, diag);
out:
	stop_all(&p);
	if (reader_started)
		pthread_join(reader, NULL);
	for (unsigned i = 0; i < started; i++)
		pthread_join(workers[i], NULL);
	free(workers);
	/* the contexts live in the window: nothing to free but the list */
	free(p.cctx_free);
	for (unsigned i = 0; i < QS_SRC_SLOTS; i++)
		XXH3_freeState(p.src[i].st);
	stats->bytes_read = p.bytes_read;
	stats->stages = p.stages;
	stats->peak_window = p.window.peak;
	free_jobs(&p);
	qs_reader_free(p.reader);
	qs_window_release(&p.window);
	while (p.slots) {
		struct prep_slot *next = p.slots->next;
		free(p.slots);
		p.slots = next;
	}
	pthread_mutex_destroy(&p.lock);
	pthread_cond_destroy(&p.changed);
	pthread_cond_destroy(&p.cctx_returned);
	pthread_mutex_destroy(&p.notice_lock);
	return rc;
}
