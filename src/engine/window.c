/* window.c - the memory window's mapping and its FIFO rings (see window.h).
 * The mapping is touched lazily, so RSS grows only to what the conversion
 * actually keeps in flight, and never beyond the window size. */
#include "window.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t align_to(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

uint64_t qs_window_mapping_size(uint64_t ring, uint64_t state, uint64_t fixed)
{
	return align_to(align_to(ring, QS_WINDOW_STATE_ALIGN) + state, QS_WINDOW_STATE_ALIGN) +
	       fixed;
}

int qs_window_init(struct qs_window *w, uint64_t ring, uint64_t state, uint64_t fixed)
{
	memset(w, 0, sizeof(*w));
	uint64_t size = qs_window_mapping_size(ring, state, fixed);
	void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	w->base = p;
	w->size = size;
	w->ring = (struct qs_window_ring){.base = w->base, .size = ring, .align = 1};
	uint64_t at = align_to(ring, QS_WINDOW_STATE_ALIGN);
	w->state = (struct qs_window_ring){
		.base = w->base + at, .size = state, .align = QS_WINDOW_STATE_ALIGN};
	at = align_to(at + state, QS_WINDOW_STATE_ALIGN);
	qs_wksp_init(&w->fixed, w->base + at);
	w->fixed_start = w->base + at;
	w->fixed_end = w->base + at + fixed;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->freed, NULL);
	return 0;
}

void qs_window_release(struct qs_window *w)
{
	if (w->base)
		munmap(w->base, w->size ? w->size : 1);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->freed);
	memset(w, 0, sizeof(*w));
}

/* Bytes carved from the fixed area so far. */
static uint64_t fixed_used(const struct qs_window *w)
{
	return (uint64_t)((uint8_t *)w->fixed.pos - w->fixed_start);
}

static void note_peak(struct qs_window *w)
{
	uint64_t used = w->ring.used + w->state.used + fixed_used(w);
	if (used > w->peak)
		w->peak = used;
}

/* Takes len bytes at the ring's head if they fit (0), else -EAGAIN.
 * Caller holds the lock. */
static int ring_take(struct qs_window_ring *r, uint64_t len, struct qs_window_span *out)
{
	if (r->used == 0)
		r->head = r->tail = 0;  /* empty ring: restart at the beginning, nothing wasted */
	uint64_t start = align_to(r->head, r->align);
	uint64_t need = start - r->head + len;
	if (start + len > r->size) {
		/* wrap and waste the tail end */
		start = 0;
		need = r->size - r->head + len;
	}
	if (r->used + need > r->size)
		return -EAGAIN;
	out->ptr = r->base + start;
	out->consumed = need;
	r->head = (start + len) % r->size;
	r->used += need;
	return 0;
}

static void ring_give_back(struct qs_window_ring *r, uint64_t consumed)
{
	r->used -= consumed;
	r->tail = (r->tail + consumed) % r->size;
}

/* Appends a state span to the list of live ones.  Caller holds the lock. */
static void state_link(struct qs_window *w, struct qs_window_span *s)
{
	s->next = NULL;
	s->released = false;
	if (w->state_newest)
		w->state_newest->next = s;
	else
		w->state_oldest = s;
	w->state_newest = s;
}

/* The common wait loop of both areas' allocations. */
static int area_alloc(struct qs_window *w, struct qs_window_ring *r, uint64_t len, bool wait,
		      struct qs_window_span *out)
{
	if (len > r->size || len == 0)
		return len ? -E2BIG : -EINVAL;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		if (w->closed) {
			pthread_mutex_unlock(&w->lock);
			return -ECANCELED;
		}
		if (ring_take(r, len, out) == 0) {
			if (r == &w->state)
				state_link(w, out);
			note_peak(w);
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
		if (!wait) {
			pthread_mutex_unlock(&w->lock);
			return -EAGAIN;
		}
		pthread_cond_wait(&w->freed, &w->lock);
	}
}

int qs_window_alloc(struct qs_window *w, uint64_t len, bool wait,
		    struct qs_window_span *out)
{
	return area_alloc(w, &w->ring, len, wait, out);
}

void qs_window_free(struct qs_window *w, const struct qs_window_span *span)
{
	pthread_mutex_lock(&w->lock);
	ring_give_back(&w->ring, span->consumed);
	pthread_cond_broadcast(&w->freed);
	pthread_mutex_unlock(&w->lock);
}

int qs_window_state_alloc(struct qs_window *w, uint64_t len, bool wait,
			  struct qs_window_span *out)
{
	return area_alloc(w, &w->state, len, wait, out);
}

void qs_window_state_free(struct qs_window *w, struct qs_window_span *span)
{
	pthread_mutex_lock(&w->lock);
	span->released = true;
	/* the ring's tail moves only past released spans, oldest first */
	while (w->state_oldest && w->state_oldest->released) {
		struct qs_window_span *s = w->state_oldest;
		ring_give_back(&w->state, s->consumed);
		w->state_oldest = s->next;
		if (!w->state_oldest)
			w->state_newest = NULL;
	}
	pthread_cond_broadcast(&w->freed);
	pthread_mutex_unlock(&w->lock);
}

void *qs_window_carve(struct qs_window *w, uint64_t bytes, size_t align)
{
	struct qs_wksp probe = w->fixed;
	uint8_t *p = qs_wksp_take(&probe, bytes, align);
	if ((uint8_t *)probe.pos > w->fixed_end)
		return NULL;
	w->fixed = probe;
	pthread_mutex_lock(&w->lock);
	note_peak(w);
	pthread_mutex_unlock(&w->lock);
	return p;
}

void qs_window_close(struct qs_window *w)
{
	pthread_mutex_lock(&w->lock);
	w->closed = true;
	pthread_cond_broadcast(&w->freed);
	pthread_mutex_unlock(&w->lock);
}

int qs_window_wait_empty(struct qs_window *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->ring.used && !w->closed)
		pthread_cond_wait(&w->freed, &w->lock);
	int rc = w->closed ? -ECANCELED : 0;
	pthread_mutex_unlock(&w->lock);
	return rc;
}
