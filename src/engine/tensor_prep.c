/* tensor_prep.c - a tensor's scheme state shared by the workers (see
 * tensor_prep.h). */
#include "tensor_prep.h"

#include <errno.h>
#include <string.h>

int qs_tensor_prep_start(struct qs_tensor_prep *tp, const struct qs_prep_sync *sync,
			 uint64_t len, uint32_t nchunks, bool wait)
{
	int rc = qs_window_state_alloc(sync->window, len, wait, &tp->span);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(sync->lock);
	tp->chunks_left = nchunks;
	tp->status = QS_PREP_IDLE;
	tp->rc = 0;
	tp->diag.msg[0] = 0;
	pthread_mutex_unlock(sync->lock);
	return 0;
}

int qs_tensor_prep_get(struct qs_tensor_prep *tp, const struct qs_prep_sync *sync,
		       qs_prep_fn fn, void *arg, const uint8_t **buf, struct qs_diag *d)
{
	pthread_mutex_lock(sync->lock);
	if (tp->status == QS_PREP_IDLE) {
		/* the first to need it computes it, outside the lock (a
		 * Cholesky of a large Hessian takes seconds) */
		tp->status = QS_PREP_RUNNING;
		pthread_mutex_unlock(sync->lock);
		struct qs_diag mine = {0};
		int rc = fn(arg, tp->span.ptr, &mine);
		pthread_mutex_lock(sync->lock);
		tp->rc = rc < 0 ? rc : 0;
		tp->status = rc < 0 ? QS_PREP_FAILED : QS_PREP_READY;
		if (rc < 0)
			tp->diag = mine;
		pthread_cond_broadcast(sync->changed);
	}
	/* someone else computes it: that always ends, since it needs nothing
	 * but its own statistics */
	while (tp->status == QS_PREP_RUNNING)
		pthread_cond_wait(sync->changed, sync->lock);
	int rc = tp->rc;
	if (rc < 0)
		*d = tp->diag;
	else
		*buf = tp->span.ptr;
	pthread_mutex_unlock(sync->lock);
	return rc;
}

void qs_tensor_prep_chunk_done(struct qs_tensor_prep *tp, const struct qs_prep_sync *sync)
{
	pthread_mutex_lock(sync->lock);
	bool last = tp->chunks_left > 0 && --tp->chunks_left == 0;
	if (last) {
		/* a chunk that failed before asking for the state may be the
		 * last: never pull the memory from under a running prepare,
		 * and keep one that has not started from ever running */
		while (tp->status == QS_PREP_RUNNING)
			pthread_cond_wait(sync->changed, sync->lock);
		if (tp->status == QS_PREP_IDLE) {
			tp->status = QS_PREP_FAILED;
			tp->rc = -ECANCELED;
		}
	}
	pthread_mutex_unlock(sync->lock);
	if (last)
		qs_window_state_free(sync->window, &tp->span);
}
