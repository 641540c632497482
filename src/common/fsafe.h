/* fsafe.h - the file-safety primitives behind DESIGN.md's "nothing is lost
 * or overwritten": file identity (st_dev/st_ino, never names), exclusive
 * locks the kernel drops when the holder dies, and creation of files that
 * never follows a symbolic link. */
#ifndef QS_FSAFE_H
#define QS_FSAFE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

/* What identifies a file's content at one moment: a change of any field
 * means the bytes may have changed (an in-place write moves mtime and
 * ctime, a replacement by rename moves the inode, a truncation the size). */
struct qs_file_id {
	uint64_t dev, ino, size;
	int64_t mtime_ns, ctime_ns;
};

void qs_file_id_from_stat(const struct stat *st, struct qs_file_id *id);
/* fstat(fd) into id; 0 or -errno. */
int qs_file_id_of_fd(int fd, struct qs_file_id *id);
bool qs_file_id_same(const struct qs_file_id *a, const struct qs_file_id *b);
/* The first field that differs, for a message ("size", "mtime", ...). */
const char *qs_file_id_diff(const struct qs_file_id *was, const struct qs_file_id *now);

/* Splits path into its folder (malloc'd, "." when there is none) and its
 * last component (pointer into path).  NULL on allocation failure or when
 * the last component is empty. */
char *qs_split_path(const char *path, const char **name);

/* Takes an exclusive flock on fd without waiting.  0, or -QS_ELOCKED with
 * *holder set to the holding process (0 when unknown), or -errno. */
int qs_lock_fd(int fd, long *holder);

/* 0 when name in dirfd (not followed) is still the file open as fd: a
 * lock taken on a file that was renamed away meanwhile protects nothing.
 * -ESTALE otherwise. */
int qs_still_named(int dirfd, const char *name, int fd);

/* Removes name in dirfd and, when it is a folder, everything under it;
 * never follows a symbolic link (links are removed, not their targets). */
int qs_remove_tree(int dirfd, const char *name);

/* renameat2(RENAME_EXCHANGE): swaps two names atomically.  -EINVAL or
 * -ENOSYS where the kernel or file system lacks it. */
int qs_rename_exchange(int dirfd, const char *a, const char *b);
/* renameat2(RENAME_NOREPLACE), falling back to link-free checks where
 * the flag is missing: fails with -EEXIST rather than replace to. */
int qs_rename_noreplace(int dirfd, const char *from, const char *to);

/* A message for a failed creation or open-for-writing: names the planted
 * link when err is -ELOOP (O_NOFOLLOW). */
const char *qs_write_open_error(int err);

#endif /* QS_FSAFE_H */
