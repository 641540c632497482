/* outdir.c - a fresh folder beside the target, swapped in whole (outdir.h). */
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include "util.h"

/* 1 when name (an entry of the target) is one of the source shards the
 * container was made from: same name, size and modification time as the
 * input description recorded at conversion. */
static int is_source_shard(const char *source_text, const char *name, const struct stat *st)
{
	if (!source_text)
		return 0;
	const char *line = source_text;
	while (*line) {
		size_t len = strcspn(line, "\n");
		char sname[1024];
		unsigned long long size;
		long long mtime;
		if (len < 1100 && sscanf(line, "shard '%1023[^']' size %llu mtime %lld", sname, &size,
					 &mtime) == 3) {
			int64_t m = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
			if (strcmp(sname, name) == 0 && size == (unsigned long long)st->st_size &&
			    mtime == m)
				return 1;
		}
		line += len + (line[len] == '\n');
	}
	return 0;
}

/* Looks through the existing target: what it holds decides whether it may
 * be replaced. */
static int check_target(struct qs_outdir *od, bool force, const struct qs_outdir_guard *g,
			struct qs_diag *diag)
{
	int fd = dup(od->target_fd);
	if (fd < 0)
		return qs_diag_set(diag, -errno, "'%s': %s", od->path, strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		int err = -errno;
		close(fd);
		return qs_diag_set(diag, err, "'%s': %s", od->path, strerror(-err));
	}
	rewinddir(d);
	int err = 0;
	bool empty = true;
	struct dirent *e;
	while (!err && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		empty = false;
		struct stat st;
		if (fstatat(od->target_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (g && g->input && (uint64_t)st.st_dev == g->input->dev &&
		    (uint64_t)st.st_ino == g->input->ino)
			err = qs_diag_set(diag, -QS_EUSAGE,
					  "'%s' holds the input '%s' (as '%s'): refusing to replace "
					  "a folder with an input inside",
					  od->path, g->input_path, e->d_name);
		else if (g && S_ISREG(st.st_mode) && is_source_shard(g->source_text, e->d_name, &st))
			err = qs_diag_set(diag, -QS_EUSAGE,
					  "'%s' holds the source checkpoint of '%s' (shard '%s'): "
					  "refusing to overwrite it; unpack into another folder",
					  od->path, g->input_path, e->d_name);
	}
	closedir(d);
	if (!err && !empty && !force)
		err = qs_diag_set(diag, -QS_EEXIST,
				  "'%s' is not empty: use --force to replace its contents (they "
				  "stay untouched until the new ones are complete)",
				  od->path);
	return err;
}

/* Removes the fresh folders of unpacks into the same target that died
 * (kill -9, power loss) before they could clean up: named for a process
 * that no longer exists, and unlocked.  A live writer's folder is locked
 * from just after its creation, and its pid exists, so it is never taken. */
static void remove_stale(struct qs_outdir *od)
{
	int fd = dup(od->parent_fd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	char prefix[300];
	snprintf(prefix, sizeof(prefix), ".%.200s.qshard-", od->name);
	size_t plen = strlen(prefix);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		long pid;
		if (strncmp(e->d_name, prefix, plen) != 0 ||
		    sscanf(e->d_name + plen, "%ld-", &pid) != 1 || pid <= 0)
			continue;
		if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		int sfd = openat(od->parent_fd, e->d_name,
				 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		long holder;
		if (sfd >= 0 && qs_lock_fd(sfd, &holder) == 0)
			qs_remove_tree(od->parent_fd, e->d_name);
		if (sfd >= 0)
			close(sfd);
	}
	closedir(d);
}

static int lock_dir(int fd, const char *path, struct qs_diag *diag)
{
	long holder;
	int err = qs_lock_fd(fd, &holder);
	if (err == -QS_ELOCKED && holder > 0)
		return qs_diag_set(diag, err, "'%s' is being written by another qshard (pid %ld)",
				   path, holder);
	if (err == -QS_ELOCKED)
		return qs_diag_set(diag, err, "'%s' is being written by another process", path);
	if (err)
		return qs_diag_set(diag, err, "'%s': cannot lock: %s", path, strerror(-err));
	return 0;
}

int qs_outdir_begin(struct qs_outdir *od, const char *path, bool force,
		    const struct qs_outdir_guard *guard, struct qs_diag *diag)
{
	memset(od, 0, sizeof(*od));
	od->parent_fd = od->target_fd = od->fd = -1;
	od->path = strdup(path);
	/* "out/" names the folder "out" */
	size_t n = od->path ? strlen(od->path) : 0;
	while (n > 1 && od->path[n - 1] == '/')
		od->path[--n] = '\0';
	od->parent = od->path ? qs_split_path(od->path, &od->name) : NULL;
	if (!od->parent)
		return qs_diag_set(diag, od->path ? -QS_EUSAGE : -ENOMEM,
				   "'%s': not a folder name", path);
	if (strcmp(od->name, ".") == 0 || strcmp(od->name, "..") == 0)
		return qs_diag_set(diag, -QS_EUSAGE,
				   "'%s': give the output folder by name, not '.' or '..'", path);
	od->parent_fd = open(od->parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (od->parent_fd < 0)
		return qs_diag_set(diag, -errno, "'%s': cannot open: %s", od->parent,
				   strerror(errno));
	struct stat st;
	if (fstatat(od->parent_fd, od->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (S_ISLNK(st.st_mode))
			return qs_diag_set(diag, -ELOOP, "'%s': %s", od->path,
					   qs_write_open_error(-ELOOP));
		if (!S_ISDIR(st.st_mode))
			return qs_diag_set(diag, -QS_EUSAGE, "'%s' exists and is not a folder",
					   od->path);
		od->target_fd = openat(od->parent_fd, od->name,
				       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (od->target_fd < 0)
			return qs_diag_set(diag, -errno, "'%s': cannot open: %s", od->path,
					   strerror(errno));
		int err = lock_dir(od->target_fd, od->path, diag);
		if (!err && qs_still_named(od->parent_fd, od->name, od->target_fd) != 0)
			err = qs_diag_set(diag, -QS_ELOCKED,
					  "'%s' was replaced by another process meanwhile", od->path);
		if (!err)
			err = check_target(od, force, guard, diag);
		if (err)
			return err;
	} else if (errno != ENOENT) {
		return qs_diag_set(diag, -errno, "'%s': %s", od->path, strerror(errno));
	}
	remove_stale(od);
	/* the fresh folder: a name nobody else uses, made by us (mkdir fails
	 * on anything already there, links included) */
	for (unsigned attempt = 0;; attempt++) {
		snprintf(od->tmp, sizeof(od->tmp), ".%.200s.qshard-%ld-%u", od->name, (long)getpid(),
			 attempt);
		if (mkdirat(od->parent_fd, od->tmp, 0700) == 0)
			break;
		if (errno != EEXIST || attempt > 1000) {
			int err = -errno;
			od->tmp[0] = '\0';
			return qs_diag_set(diag, err, "'%s': cannot create a folder beside it: %s",
					   od->path, strerror(-err));
		}
	}
	od->fd = openat(od->parent_fd, od->tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (od->fd < 0)
		return qs_diag_set(diag, -errno, "'%s/%s': %s", od->parent, od->tmp, strerror(errno));
	return lock_dir(od->fd, od->tmp, diag);
}

int qs_outdir_commit(struct qs_outdir *od, struct qs_diag *diag)
{
	/* the folder was made 0700 so nobody could plant anything in it while
	 * it filled; now the mode mkdir would have given */
	mode_t mask = umask(0);
	umask(mask);
	if (fchmod(od->fd, 0777 & ~mask) != 0 || fsync(od->fd) != 0)
		return qs_diag_set(diag, -errno, "'%s/%s': %s", od->parent, od->tmp, strerror(errno));
	int err;
	if (od->target_fd < 0) {
		err = qs_rename_noreplace(od->parent_fd, od->tmp, od->name);
		if (err == -EEXIST || err == -ENOTEMPTY)
			return qs_diag_set(diag, -QS_EEXIST,
					   "'%s' was created by another process meanwhile; nothing "
					   "replaced",
					   od->path);
		if (err)
			return qs_diag_set(diag, err, "'%s': cannot rename into place: %s", od->path,
					   strerror(-err));
	} else {
		err = qs_rename_exchange(od->parent_fd, od->tmp, od->name);
		if (err == -EINVAL || err == -ENOSYS) {
			/* no atomic exchange here: move the old folder aside,
			 * then the new one in; the target is missing for an
			 * instant but never mixed */
			char aside[sizeof(od->tmp)];
			snprintf(aside, sizeof(aside), "%.300s.old", od->tmp);
			err = renameat(od->parent_fd, od->name, od->parent_fd, aside) == 0 ? 0 : -errno;
			if (!err && renameat(od->parent_fd, od->tmp, od->parent_fd, od->name) != 0) {
				err = -errno;
				renameat(od->parent_fd, aside, od->parent_fd, od->name);
			}
			if (!err)
				snprintf(od->tmp, sizeof(od->tmp), "%s", aside);
		}
		if (err)
			return qs_diag_set(diag, err, "'%s': cannot swap the new contents in: %s",
					   od->path, strerror(-err));
		/* od->tmp now names the old contents */
		err = qs_remove_tree(od->parent_fd, od->tmp);
		if (err)
			return qs_diag_set(diag, err,
					   "'%s' holds the new contents, but its old ones in '%s/%s' "
					   "could not be removed: %s",
					   od->path, od->parent, od->tmp, strerror(-err));
	}
	od->tmp[0] = '\0';
	if (fsync(od->parent_fd) != 0 && errno != EINVAL && errno != ENOTSUP)
		return qs_diag_set(diag, -errno, "'%s': cannot sync: %s", od->parent, strerror(errno));
	return 0;
}

void qs_outdir_release(struct qs_outdir *od)
{
	if (od->tmp[0] && od->parent_fd >= 0)
		qs_remove_tree(od->parent_fd, od->tmp);
	if (od->fd >= 0)
		close(od->fd);
	if (od->target_fd >= 0)
		close(od->target_fd);
	if (od->parent_fd >= 0)
		close(od->parent_fd);
	free(od->path);
	free(od->parent);
	memset(od, 0, sizeof(*od));
	od->parent_fd = od->target_fd = od->fd = -1;
}
