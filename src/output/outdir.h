/* outdir.h - an output folder that appears complete or not at all.
 *
 * Every file goes into a fresh folder created beside the target (same file
 * system, mode 0700 while it fills, locked).  Only when all of it is
 * written and synced does it take the target's name: by rename when the
 * target does not exist, by an atomic exchange (renameat2 RENAME_EXCHANGE)
 * when it does, after which the old contents are removed.  A failure at
 * any point removes the fresh folder and leaves the target as it was, so
 * no mixture of two unpacks can ever be seen under the target's name.
 */
#ifndef QS_OUTDIR_H
#define QS_OUTDIR_H

#include <stdbool.h>

#include "fsafe.h"
#include "qshard.h"

struct qs_outdir {
	char *path;        /* the target, as given */
	char *parent;      /* its folder */
	const char *name;  /* its last component */
	int parent_fd;
	int target_fd;     /* the existing target (locked), or -1 */
	int fd;            /* the fresh folder every file is created in */
	char tmp[320];     /* the fresh folder's name in parent */
};

/* Things the target must not hold: the file being unpacked (by identity)
 * and the source checkpoint's shards (by name, size and mtime as the
 * container's input description records them). */
struct qs_outdir_guard {
	const struct qs_file_id *input;
	const char *input_path;
	const char *source_text;  /* "shard 'NAME' size N mtime M" lines, or NULL */
};

/* Checks the target (not a link, not locked by another writer, holding no
 * input, empty unless force) and creates the fresh folder.  Errors:
 * -QS_EUSAGE (an input inside), -QS_EEXIST (not empty), -QS_ELOCKED,
 * -ELOOP (a link), -errno. */
int qs_outdir_begin(struct qs_outdir *od, const char *path, bool force,
		    const struct qs_outdir_guard *guard, struct qs_diag *diag);
/* Syncs the fresh folder and puts it under the target's name. */
int qs_outdir_commit(struct qs_outdir *od, struct qs_diag *diag);
/* Removes the fresh folder (after a failure; a no-op after commit) and
 * releases everything. */
void qs_outdir_release(struct qs_outdir *od);

#endif /* QS_OUTDIR_H */
