/* wksp.h - carving one caller-provided scratch block into aligned arrays
 * (after zstd's zstd_cwksp.h: one bump allocator instead of each scheme
 * aligning pointers its own way).
 *
 * The same sequence of qs_wksp_take calls sizes a block (base NULL: only
 * counts) and carves it (base = the block), so a scheme's scratch_size and
 * its carve cannot disagree.  Every take aligns the running position to
 * `align` (a power of two); a block that did not come aligned costs at most
 * QS_WKSP_ALIGN - 1 bytes more, which qs_wksp_init counts up front.
 *
 * A scheme whose scratch_size formula predates this helper keeps its
 * formula (the memory window and so the chunking are computed from it) and
 * only carves with it; the formula must stay >= what the takes consume.
 */
#ifndef QS_WKSP_H
#define QS_WKSP_H

#include <stddef.h>
#include <stdint.h>

#define QS_WKSP_ALIGN 64u

struct qs_wksp {
	uintptr_t pos;   /* next free byte (base NULL: an offset from 0) */
	uint64_t used;   /* bytes the takes need so far, alignment slack included */
	int counting;    /* no block: positions only */
};

static inline void qs_wksp_init(struct qs_wksp *w, void *base)
{
	w->counting = base == NULL;
	w->pos = (uintptr_t)base;
	w->used = QS_WKSP_ALIGN - 1;  /* worst-case slack to align an unaligned base */
	if (!w->counting)
		w->pos = (w->pos + QS_WKSP_ALIGN - 1) & ~(uintptr_t)(QS_WKSP_ALIGN - 1);
}

/* The next `bytes` bytes aligned to `align` (<= QS_WKSP_ALIGN); NULL while
 * counting.  used grows by the padding and the bytes (no overflow check:
 * callers bound their sizes first). */
static inline void *qs_wksp_take(struct qs_wksp *w, uint64_t bytes, size_t align)
{
	uintptr_t a = (w->pos + align - 1) & ~(uintptr_t)(align - 1);
	w->used += (uint64_t)(a - w->pos) + bytes;
	w->pos = a + (uintptr_t)bytes;
	return w->counting ? NULL : (void *)a;
}

#endif /* QS_WKSP_H */
