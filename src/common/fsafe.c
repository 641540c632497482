/* fsafe.c - file identity, kernel-dropped locks, link-free removal and
 * atomic renames (fsafe.h). */
#include "fsafe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "util.h"

void qs_file_id_from_stat(const struct stat *st, struct qs_file_id *id)
{
	id->dev = (uint64_t)st->st_dev;
	id->ino = (uint64_t)st->st_ino;
	id->size = (uint64_t)st->st_size;
	id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	id->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

int qs_file_id_of_fd(int fd, struct qs_file_id *id)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	qs_file_id_from_stat(&st, id);
	return 0;
}

bool qs_file_id_same(const struct qs_file_id *a, const struct qs_file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

const char *qs_file_id_diff(const struct qs_file_id *was, const struct qs_file_id *now)
{
	if (was->dev != now->dev || was->ino != now->ino)
		return "replaced by another file";
	if (was->size != now->size)
		return "size changed";
	if (was->mtime_ns != now->mtime_ns)
		return "modification time changed";
	if (was->ctime_ns != now->ctime_ns)
		return "status change time changed";
	return "unchanged";
}

char *qs_split_path(const char *path, const char **name)
{
	const char *slash = strrchr(path, '/');
	*name = slash ? slash + 1 : path;
	if (**name == '\0')
		return NULL;
	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

/* The pid /proc/locks gives for a lock on the file open as fd.  flock
 * records no owner we could ask for otherwise; 0 when it cannot be told. */
static long lock_holder(int fd)
{
	struct stat st;
	if (fstat(fd, &st) != 0)
		return 0;
	FILE *f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	char line[256];
	long pid = 0;
	while (!pid && fgets(line, sizeof(line), f)) {
		char kind[16], mode[16], rw[16];
		long p;
		unsigned maj, min;
		unsigned long long ino;
		/* "1: FLOCK  ADVISORY  WRITE 22608 fe:00:5316838 0 EOF"; a
		 * waiter's line starts "1: -> FLOCK" and does not parse */
		if (sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", kind, mode, rw, &p, &maj,
			   &min, &ino) == 7 &&
		    strcmp(kind, "FLOCK") == 0 && maj == major(st.st_dev) &&
		    min == minor(st.st_dev) && ino == (unsigned long long)st.st_ino && p > 0)
			pid = p;
	}
	fclose(f);
	return pid;
}

int qs_lock_fd(int fd, long *holder)
{
	*holder = 0;
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno != EWOULDBLOCK)
			return -errno;
		*holder = lock_holder(fd);
		return -QS_ELOCKED;
	}
}

int qs_still_named(int dirfd, const char *name, int fd)
{
	struct stat a, b;
	if (fstat(fd, &a) != 0)
		return -errno;
	if (fstatat(dirfd, name, &b, AT_SYMLINK_NOFOLLOW) != 0)
		return -ESTALE;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino ? 0 : -ESTALE;
}

int qs_remove_tree(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) == 0)
		return 0;
	if (errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int err = -errno;
		close(fd);
		return err;
	}
	int err = 0;
	struct dirent *e;
	while (!err && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		err = qs_remove_tree(fd, e->d_name);
	}
	closedir(d);
	if (!err && unlinkat(dirfd, name, AT_REMOVEDIR) != 0)
		err = -errno;
	return err;
}

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

static int rename2(int dirfd, const char *a, const char *b, unsigned flags)
{
#ifdef SYS_renameat2
	if (syscall(SYS_renameat2, dirfd, a, dirfd, b, flags) == 0)
		return 0;
	return -errno;
#else
	(void)dirfd; (void)a; (void)b; (void)flags;
	return -ENOSYS;
#endif
}

int qs_rename_exchange(int dirfd, const char *a, const char *b)
{
	return rename2(dirfd, a, b, RENAME_EXCHANGE);
}

int qs_rename_noreplace(int dirfd, const char *from, const char *to)
{
	int err = rename2(dirfd, from, to, RENAME_NOREPLACE);
	if (err != -EINVAL && err != -ENOSYS)
		return err;
	/* no flag support: a check then a rename; the window between them
	 * is what the kernel would have closed */
	struct stat st;
	if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return -EEXIST;
	return renameat(dirfd, from, dirfd, to) == 0 ? 0 : -errno;
}

const char *qs_write_open_error(int err)
{
	if (err == -ELOOP)
		return "is a symbolic link; qshard never writes through one";
	return qs_strerror(err);
}
