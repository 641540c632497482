/* test_window.c - the memory window's state and fixed areas (window.h),
 * a tensor's state shared by workers (tensor_prep.h) and the static zstd
 * contexts' size (pipeline.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "pipeline.h"
#include "tensor_prep.h"
#include "util.h"
#include "window.h"

static void test_state_area_releases_out_of_order(void **state)
{
	(void)state;
	struct qs_window w;
	struct qs_window_span a, b, c;
	assert_int_equal(qs_window_init(&w, 4096, 1000, 0), 0);
	assert_int_equal(qs_window_state_alloc(&w, 1001, false, &a), -E2BIG);
	assert_int_equal(qs_window_state_alloc(&w, 300, false, &a), 0);
	assert_int_equal(qs_window_state_alloc(&w, 300, false, &b), 0);
	/* every state starts aligned: the second after 300 bytes at 320 */
	assert_int_equal((uintptr_t)a.ptr % QS_WINDOW_STATE_ALIGN, 0);
	assert_int_equal((uintptr_t)b.ptr % QS_WINDOW_STATE_ALIGN, 0);
	assert_ptr_equal(b.ptr, a.ptr + 320);
	assert_true(a.ptr >= w.base + 4096);  /* after the ring */
	/* two states at once, a third does not fit */
	assert_int_equal(qs_window_state_alloc(&w, 500, false, &c), -EAGAIN);
	/* the newer one finishes first: its memory waits for the older */
	qs_window_state_free(&w, &b);
	assert_int_equal(w.state.used, 320 + 300);
	assert_int_equal(qs_window_state_alloc(&w, 500, false, &c), -EAGAIN);
	qs_window_state_free(&w, &a);
	assert_int_equal(w.state.used, 0);
	assert_int_equal(qs_window_state_alloc(&w, 1000, false, &c), 0);  /* the whole area */
	assert_ptr_equal(c.ptr, a.ptr);
	/* the ring is untouched by all of it */
	assert_int_equal(w.ring.used, 0);
	assert_int_equal(w.peak, 1000);
	qs_window_state_free(&w, &c);
	qs_window_close(&w);
	assert_int_equal(qs_window_state_alloc(&w, 10, true, &c), -ECANCELED);
	qs_window_release(&w);
}

static void test_fixed_area_carves_within(void **state)
{
	(void)state;
	struct qs_window w;
	uint64_t ring = 4096 + 8, st = 100, fixed = 3 * 192;
	uint64_t size = qs_window_mapping_size(ring, st, fixed);
	assert_true(size >= ring + st + fixed);
	assert_true(size <= ring + st + fixed + 2 * (QS_WINDOW_STATE_ALIGN - 1));
	assert_int_equal(qs_window_init(&w, ring, st, fixed), 0);
	assert_int_equal(w.size, size);
	uint8_t *p[3];
	for (int i = 0; i < 3; i++) {
		p[i] = qs_window_carve(&w, 190, QS_WINDOW_STATE_ALIGN);
		assert_non_null(p[i]);
		assert_int_equal((uintptr_t)p[i] % QS_WINDOW_STATE_ALIGN, 0);
		assert_true(p[i] >= w.state.base + st);
		assert_true(p[i] + 190 <= w.base + w.size);
	}
	assert_ptr_equal(p[1], p[0] + 192);
	assert_null(qs_window_carve(&w, 3, 1));  /* 2 bytes left */
	assert_int_equal(w.peak, 2 * 192 + 190);
	qs_window_release(&w);
}

/* ---- tensor_prep: computed once, shared, released after the last chunk */

struct shared {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	struct qs_window w;
	struct qs_prep_sync sync;
	struct qs_tensor_prep tp;
	int calls;
	int fail;  /* fn's return */
};

static int compute(void *arg, uint8_t *buf, struct qs_diag *d)
{
	struct shared *s = arg;
	pthread_mutex_lock(&s->lock);
	s->calls++;
	pthread_mutex_unlock(&s->lock);
	/* long enough for the other threads to arrive while it runs */
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	if (s->fail)
		return qs_diag_set(d, s->fail, "tensor 't': Hessian unreadable");
	memset(buf, 0xab, 64);
	return 0;
}

struct worker_out {
	struct shared *s;
	int rc;
	const uint8_t *buf;
	struct qs_diag d;
};

static void *worker(void *arg)
{
	struct worker_out *o = arg;
	o->rc = qs_tensor_prep_get(&o->s->tp, &o->s->sync, compute, o->s, &o->buf, &o->d);
	if (o->rc == 0 && o->buf[63] != 0xab)
		o->rc = -1000;  /* saw the state before it was computed */
	qs_tensor_prep_chunk_done(&o->s->tp, &o->s->sync);
	return NULL;
}

static void shared_init(struct shared *s, int fail)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->changed, NULL);
	assert_int_equal(qs_window_init(&s->w, 0, 4096, 0), 0);
	s->sync = (struct qs_prep_sync){.lock = &s->lock, .changed = &s->changed, .window = &s->w};
	s->fail = fail;
}

static void shared_release(struct shared *s)
{
	qs_window_release(&s->w);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->changed);
}

#define NW 6

static void run_workers(struct shared *s, struct worker_out *o)
{
	pthread_t th[NW];
	for (int i = 0; i < NW; i++) {
		o[i] = (struct worker_out){.s = s};
		assert_int_equal(pthread_create(&th[i], NULL, worker, &o[i]), 0);
	}
	for (int i = 0; i < NW; i++)
		pthread_join(th[i], NULL);
}

static void test_prep_once_shared_released_after_last(void **state)
{
	(void)state;
	struct shared s;
	struct worker_out o[NW];
	shared_init(&s, 0);
	/* one more chunk than workers: the memory outlives them all */
	assert_int_equal(qs_tensor_prep_start(&s.tp, &s.sync, 4096, NW + 1, false), 0);
	run_workers(&s, o);
	assert_int_equal(s.calls, 1);
	for (int i = 0; i < NW; i++) {
		assert_int_equal(o[i].rc, 0);
		assert_ptr_equal(o[i].buf, s.tp.span.ptr);
	}
	assert_int_equal(s.w.state.used, 4096);
	struct qs_tensor_prep next;
	assert_int_equal(qs_tensor_prep_start(&next, &s.sync, 4096, 1, false), -EAGAIN);
	/* the last chunk is quantized: the next tensor's state may start */
	qs_tensor_prep_chunk_done(&s.tp, &s.sync);
	assert_int_equal(s.w.state.used, 0);
	assert_int_equal(qs_tensor_prep_start(&next, &s.sync, 4096, 1, false), 0);
	shared_release(&s);
}

static void test_prep_failure_reaches_every_chunk(void **state)
{
	(void)state;
	struct shared s;
	struct worker_out o[NW];
	shared_init(&s, -EIO);
	assert_int_equal(qs_tensor_prep_start(&s.tp, &s.sync, 100, NW, false), 0);
	run_workers(&s, o);
	assert_int_equal(s.calls, 1);  /* not retried by every chunk */
	for (int i = 0; i < NW; i++) {
		assert_int_equal(o[i].rc, -EIO);
		assert_string_equal(o[i].d.msg, "tensor 't': Hessian unreadable");
	}
	assert_int_equal(s.w.state.used, 0);  /* released even so */
	shared_release(&s);
}

static void test_prep_never_runs_after_release(void **state)
{
	(void)state;
	struct shared s;
	shared_init(&s, 0);
	/* the tensor's only chunk failed (NaN) before asking for the state,
	 * and its memory went back: the queued preparation must not run */
	assert_int_equal(qs_tensor_prep_start(&s.tp, &s.sync, 100, 1, false), 0);
	qs_tensor_prep_chunk_done(&s.tp, &s.sync);
	assert_int_equal(s.w.state.used, 0);
	const uint8_t *buf = NULL;
	struct qs_diag d;
	assert_int_equal(qs_tensor_prep_get(&s.tp, &s.sync, compute, &s, &buf, &d), -ECANCELED);
	assert_int_equal(s.calls, 0);
	shared_release(&s);
}

/* ---- static zstd contexts: the size holds every frame up to the largest */

/* Every frame size up to max (the tiers' edges) at every level compresses
 * in a static context of qs_pipeline_cctx_bytes(level, max), to the bytes
 * a heap context gives. */
static void check_static_cctx(uint64_t max)
{
	static const size_t all_sizes[] = {1, 1000, 16u << 10, (16u << 10) + 1, 100000,
					   128u << 10, (128u << 10) + 1, 256u << 10,
					   (256u << 10) + 1, 700000, 1u << 20};
	size_t sizes[sizeof(all_sizes) / sizeof(all_sizes[0]) + 1], nsizes = 0;
	for (size_t i = 0; i < sizeof(all_sizes) / sizeof(all_sizes[0]); i++)
		if (all_sizes[i] < max)
			sizes[nsizes++] = all_sizes[i];
	sizes[nsizes++] = (size_t)max;
	uint8_t *src = malloc(max), *dst = malloc(ZSTD_compressBound(max));
	assert_non_null(src);
	assert_non_null(dst);
	/* compressible but not trivial: small codes, as packed payloads are */
	uint32_t x = 1;
	for (uint64_t i = 0; i < max; i++) {
		x = x * 1103515245u + 12345u;
		src[i] = (uint8_t)((x >> 16) & 0x0f);
	}
	int levels[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17, 18, 19};
	for (size_t l = 0; l < sizeof(levels) / sizeof(levels[0]); l++) {
		uint64_t bytes = qs_pipeline_cctx_bytes(levels[l], max);
		assert_true(qs_pipeline_cctx_stride(levels[l], max) >= bytes);
		assert_true(bytes <= ZSTD_estimateCCtxSize(levels[l]));
		void *ws = aligned_alloc(64, (bytes + 63) / 64 * 64);
		assert_non_null(ws);
		ZSTD_CCtx *c = ZSTD_initStaticCCtx(ws, (size_t)bytes);
		assert_non_null(c);
		ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, levels[l]);
		ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
		for (size_t i = 0; i < nsizes; i++) {
			size_t z = ZSTD_compress2(c, dst, ZSTD_compressBound(sizes[i]), src, sizes[i]);
			if (ZSTD_isError(z))
				fail_msg("max %llu, level %d, %zu bytes: %s", (unsigned long long)max, levels[l], sizes[i],
					 ZSTD_getErrorName(z));
			/* the same bytes a heap context writes */
			uint8_t *ref = malloc(ZSTD_compressBound(sizes[i]));
			assert_non_null(ref);
			ZSTD_CCtx *h = ZSTD_createCCtx();
			ZSTD_CCtx_setParameter(h, ZSTD_c_compressionLevel, levels[l]);
			ZSTD_CCtx_setParameter(h, ZSTD_c_contentSizeFlag, 1);
			size_t zr = ZSTD_compress2(h, ref, ZSTD_compressBound(sizes[i]), src, sizes[i]);
			assert_int_equal(zr, z);
			assert_memory_equal(ref, dst, z);
			ZSTD_freeCCtx(h);
			free(ref);
		}
		free(ws);
	}
	free(src);
	free(dst);
}

static void test_static_cctx_holds_every_frame_size(void **state)
{
	(void)state;
	check_static_cctx(1u << 20);
	/* largest frames just past a tier's top: the frames at the top, in
	 * the smaller tier's table row, need more (zstd 1.5: level 1 at
	 * 20000, level 4 at 140000) */
	check_static_cctx(20000);
	check_static_cctx(140000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_area_releases_out_of_order),
		cmocka_unit_test(test_fixed_area_carves_within),
		cmocka_unit_test(test_prep_once_shared_released_after_last),
		cmocka_unit_test(test_prep_failure_reaches_every_chunk),
		cmocka_unit_test(test_prep_never_runs_after_release),
		cmocka_unit_test(test_static_cctx_holds_every_frame_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
