/* tensor_prep.h - one tensor's scheme state (the damped Hessian's factor
 * of gptq/athena, claq's and daq's statistics: scheme.h's prepare) as the
 * pipeline's workers share it.
 *
 * The reader takes the state's memory from the window's state area in plan
 * order (qs_tensor_prep_start) and queues a preparation job ahead of the
 * tensor's chunks; a worker computes it (qs_tensor_prep_get: the first
 * caller computes, later ones wait for it, so it is computed once however
 * the jobs are interleaved); each chunk, once quantized, says so
 * (qs_tensor_prep_chunk_done) and the last one releases the memory, so the
 * next tensor's state can take it while this tensor's frames are still
 * waiting to be written.
 *
 * All of it runs under the pipeline's lock and condition variable (lock,
 * changed), which the caller passes in; prepare itself runs unlocked.
 */
#ifndef QS_TENSOR_PREP_H
#define QS_TENSOR_PREP_H

#include <pthread.h>
#include <stdint.h>

#include "qshard.h"
#include "window.h"

enum qs_prep_status { QS_PREP_IDLE, QS_PREP_RUNNING, QS_PREP_READY, QS_PREP_FAILED };

struct qs_tensor_prep {
	struct qs_window_span span;   /* in the window's state area */
	uint32_t chunks_left;         /* chunks not yet quantized; 0 releases span */
	enum qs_prep_status status;
	int rc;                       /* with QS_PREP_FAILED */
	struct qs_diag diag;          /* with QS_PREP_FAILED */
};

/* Computes the state into buf; 0 or a negative code with d set. */
typedef int (*qs_prep_fn)(void *arg, uint8_t *buf, struct qs_diag *d);

struct qs_prep_sync {
	pthread_mutex_t *lock;
	pthread_cond_t *changed;      /* broadcast when a state becomes ready or fails */
	struct qs_window *window;
};

/* Takes len bytes of state memory for a tensor of nchunks converted chunks
 * (wait as qs_window_state_alloc).  Not under the lock. */
int qs_tensor_prep_start(struct qs_tensor_prep *tp, const struct qs_prep_sync *sync,
			 uint64_t len, uint32_t nchunks, bool wait);
/* The computed state (0, *buf set), computing it with fn(arg) when nobody
 * has yet; the failure (its code, its message into d) when that failed.
 * Call with the lock NOT held. */
int qs_tensor_prep_get(struct qs_tensor_prep *tp, const struct qs_prep_sync *sync,
		       qs_prep_fn fn, void *arg, const uint8_t **buf, struct qs_diag *d);
/* One chunk of the tensor is done with the state (quantized, or failed);
 * after the last one, the memory goes back to the window. */
void qs_tensor_prep_chunk_done(struct qs_tensor_prep *tp, const struct qs_prep_sync *sync);

#endif /* QS_TENSOR_PREP_H */
