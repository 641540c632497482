/* window.h - the bounded memory window every conversion buffer comes from.
 *
 * One mapping of fixed size, handed out as a ring: the reader allocates
 * chunk buffers in plan order and the writer frees them in the same order,
 * so allocation is a FIFO and never fragments.  A request blocks until the
 * writer has freed enough; since every earlier chunk already holds its
 * memory and will be written, the wait always ends (no deadlock as long as
 * one request fits the ring, which the plan guarantees).
 */
#ifndef QS_WINDOW_H
#define QS_WINDOW_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct qs_window {
	uint8_t *base;
	uint64_t size;
	uint64_t head;      /* next allocation starts here (mod size) */
	uint64_t tail;      /* oldest live allocation starts here */
	uint64_t used;      /* bytes between tail and head, wasted wrap tail included */
	uint64_t peak;      /* high-water mark of used */
	bool closed;        /* set on shutdown: waiting allocations fail */
	pthread_mutex_t lock;
	pthread_cond_t freed;
};

/* An allocation: where it starts and how many ring bytes it consumed
 * (including any skipped tail at the wrap). */
struct qs_window_span {
	uint8_t *ptr;
	uint64_t consumed;
};

int qs_window_init(struct qs_window *w, uint64_t size);
void qs_window_release(struct qs_window *w);
/* Takes len contiguous bytes.  With wait, blocks until they are free;
 * without, fails with -EAGAIN.  Fails with -ECANCELED once the window is
 * closed, -E2BIG if len exceeds the ring. */
int qs_window_alloc(struct qs_window *w, uint64_t len, bool wait,
		    struct qs_window_span *out);
/* Frees the oldest live allocation (FIFO order is the caller's duty). */
void qs_window_free(struct qs_window *w, const struct qs_window_span *span);
void qs_window_close(struct qs_window *w);
/* Blocks until every allocation is freed (the next one then starts at the
 * beginning of the ring); -ECANCELED once the window is closed. */
int qs_window_wait_empty(struct qs_window *w);

#endif /* QS_WINDOW_H */
