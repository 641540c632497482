/* window.h - the bounded memory window every conversion buffer comes from.
 *
 * One anonymous mapping of fixed size holds everything a conversion keeps
 * in memory in proportion to --memory, in three areas:
 *
 *   ring    chunk buffers.  The reader allocates them in plan order and
 *           the writer frees them in the same order, so allocation is a
 *           FIFO and never fragments.  A request blocks until the writer
 *           has freed enough; since every earlier chunk already holds its
 *           memory and will be written, the wait always ends (no deadlock
 *           as long as one request fits the ring, which the plan
 *           guarantees).
 *   state   per-tensor scheme state (the Hessian, its factor: plan.h's
 *           prep_total), also allocated by the reader in plan order, but
 *           released by the worker that quantizes a tensor's last chunk,
 *           so out of order: a span released early is reclaimed once every
 *           older span is released too.  Several tensors' states live at
 *           once when they fit (the area is as large as the largest).
 *   fixed   carved once before the threads start (the zstd compression
 *           contexts), with wksp.h's bump allocator.
 *
 * peak counts all three, so it is the high-water mark of --memory's
 * conversion buffers.
 */
#ifndef QS_WINDOW_H
#define QS_WINDOW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "wksp.h"

/* One FIFO ring inside the mapping. */
struct qs_window_ring {
	uint8_t *base;
	uint64_t size;
	uint64_t head;      /* next allocation starts here (mod size) */
	uint64_t tail;      /* oldest live allocation starts here */
	uint64_t used;      /* bytes between tail and head, padding and wasted wrap tail included */
	unsigned align;     /* every allocation starts at base + a multiple of this */
};

/* An allocation: where it starts and how many ring bytes it consumed
 * (including any padding and skipped tail at the wrap).  next and
 * released are the state area's bookkeeping. */
struct qs_window_span {
	uint8_t *ptr;
	uint64_t consumed;
	struct qs_window_span *next;
	bool released;
};

struct qs_window {
	uint8_t *base;
	uint64_t size;      /* the whole mapping */
	struct qs_window_ring ring, state;
	struct qs_window_span *state_oldest, *state_newest;  /* live state spans, oldest first */
	struct qs_wksp fixed;
	uint8_t *fixed_start, *fixed_end;
	uint64_t peak;      /* high-water mark of ring.used + state.used + fixed bytes */
	bool closed;        /* set on shutdown: waiting allocations fail */
	pthread_mutex_t lock;
	pthread_cond_t freed;
};

/* The alignment of the state and fixed areas' starts and of every state
 * allocation (the ring's buffers are page multiples, plan.h). */
#define QS_WINDOW_STATE_ALIGN 64u

/* Bytes qs_window_init maps for these area sizes: their sum plus at most
 * 2 * (QS_WINDOW_STATE_ALIGN - 1) of padding between them. */
uint64_t qs_window_mapping_size(uint64_t ring, uint64_t state, uint64_t fixed);

/* Maps the three areas (ring first, so it starts page-aligned). */
int qs_window_init(struct qs_window *w, uint64_t ring, uint64_t state, uint64_t fixed);
void qs_window_release(struct qs_window *w);
/* Takes len contiguous ring bytes.  With wait, blocks until they are free;
 * without, fails with -EAGAIN.  Fails with -ECANCELED once the window is
 * closed, -E2BIG if len exceeds the ring. */
int qs_window_alloc(struct qs_window *w, uint64_t len, bool wait,
		    struct qs_window_span *out);
/* Frees the oldest live ring allocation (FIFO order is the caller's duty). */
void qs_window_free(struct qs_window *w, const struct qs_window_span *span);
/* The same for the state area: allocations in any caller's order, spans
 * released in any order (the span must stay valid until the window is
 * released or every older span is released). */
int qs_window_state_alloc(struct qs_window *w, uint64_t len, bool wait,
			  struct qs_window_span *out);
void qs_window_state_free(struct qs_window *w, struct qs_window_span *span);
/* The next `bytes` of the fixed area, aligned to align (<= QS_WKSP_ALIGN);
 * NULL when the area is exhausted.  Not thread-safe: carve before the
 * threads start. */
void *qs_window_carve(struct qs_window *w, uint64_t bytes, size_t align);
void qs_window_close(struct qs_window *w);
/* Blocks until every allocation is freed (the next one then starts at the
 * beginning of the ring); -ECANCELED once the window is closed. */
int qs_window_wait_empty(struct qs_window *w);

#endif /* QS_WINDOW_H */
