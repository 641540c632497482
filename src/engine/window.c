/* window.c - FIFO ring allocator over one anonymous mapping (see window.h).
 * The mapping is touched lazily, so RSS grows only to what the conversion
 * actually keeps in flight, and never beyond the window size. */
#include "window.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int qs_window_init(struct qs_window *w, uint64_t size)
{
	memset(w, 0, sizeof(*w));
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	w->base = p;
	w->size = size;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->freed, NULL);
	return 0;
}

void qs_window_release(struct qs_window *w)
{
	if (w->base)
		munmap(w->base, w->size);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->freed);
	memset(w, 0, sizeof(*w));
}

int qs_window_alloc(struct qs_window *w, uint64_t len, bool wait,
		    struct qs_window_span *out)
{
	if (len > w->size)
		return -E2BIG;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		if (w->closed) {
			pthread_mutex_unlock(&w->lock);
			return -ECANCELED;
		}
		uint64_t to_end = w->size - w->head;
		/* contiguous at head, or wrap and waste the tail end */
		uint64_t need = len <= to_end ? len : to_end + len;
		if (w->used == 0) {
			/* empty ring: restart at the beginning, nothing wasted */
			w->head = w->tail = 0;
			need = len;
		}
		if (w->used + need <= w->size) {
			uint64_t start = len <= w->size - w->head ? w->head : 0;
			out->ptr = w->base + start;
			out->consumed = need;
			w->head = (start + len) % w->size;
			w->used += need;
			if (w->used > w->peak)
				w->peak = w->used;
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

void qs_window_free(struct qs_window *w, const struct qs_window_span *span)
{
	pthread_mutex_lock(&w->lock);
	w->used -= span->consumed;
	w->tail = (w->tail + span->consumed) % w->size;
	pthread_cond_broadcast(&w->freed);
	pthread_mutex_unlock(&w->lock);
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
	while (w->used && !w->closed)
		pthread_cond_wait(&w->freed, &w->lock);
	int rc = w->closed ? -ECANCELED : 0;
	pthread_mutex_unlock(&w->lock);
	return rc;
}
