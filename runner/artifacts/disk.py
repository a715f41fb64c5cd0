"""Durable filesystem primitives: fsync, atomic small-file replace, hardlink-or-copy.

A rename or a new link is durable only once its parent directory is fsynced, and file data only
once the file is; every helper here says which of the two it takes care of.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import uuid
from pathlib import Path

# ioctl FICLONE (linux/fs.h): share extents (reflink) on btrfs/xfs/bcachefs; fails elsewhere.
_FICLONE = 0x40049409
_CHUNK = 1 << 20
# Errors after which a hardlink can still be replaced by a copy (other fs, link count, policy).
_LINK_FALLBACK = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES, errno.ENOTSUP, errno.ENOSYS})
# Errors after which the fast copy paths give way to a plain read/write loop.
_COPY_FALLBACK = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.ETXTBSY})


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """fsync a regular file's data and inode (O_NOFOLLOW: never through a link)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durably(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` (must not exist) with `data`, fsynced. The caller fsyncs the directory."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(path: Path, data: bytes) -> None:
    """Atomically replace `path` by `data`: tmp.<uuid> → fsync → os.replace → fsync(dir)."""
    tmp = path.with_name(f"{path.name}.tmp.{uuid.uuid4().hex}")
    try:
        write_durably(tmp, data)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def link_or_copy(source: Path, dest: Path) -> bool:
    """Hardlink `source` at `dest` (True); copy it when the filesystem refuses the link (False).

    Only for files that will never be written again (published versions, a stopped run's
    upper dir): a link shares the inode, so a later write would change both.
    """
    try:
        os.link(source, dest, follow_symlinks=False)
        return True
    except OSError as exc:
        if exc.errno not in _LINK_FALLBACK:
            raise
    copy_file(source, dest, stat.S_IMODE(os.lstat(source).st_mode))
    return False


def copy_file(source: Path, dest: Path, mode: int) -> None:
    """Copy a regular file's bytes into a new `dest` with `mode`, fsynced; mtime preserved.

    Tries a reflink first, then copy_file_range (in-kernel, may reflink on its own), then a
    plain read/write loop. Opens `source` with O_NOFOLLOW|O_NONBLOCK and checks it is still a
    regular file, so a swap to a link or FIFO after the caller's lstat cannot redirect or hang us.
    """
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(src)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, "no longer a regular file", str(source))
        dst = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            _copy_bytes(src, dst, info.st_size)
            os.fchmod(dst, mode)
            os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))
            os.fsync(dst)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _copy_bytes(src: int, dst: int, size: int) -> None:
    try:
        fcntl.ioctl(dst, _FICLONE, src)
        return
    except OSError:
        pass  # not a reflink-capable filesystem (or not the same one): keep going
    if hasattr(os, "copy_file_range"):
        try:
            _copy_range(src, dst, size)
            return
        except OSError as exc:
            if exc.errno not in _COPY_FALLBACK:
                raise
            os.lseek(src, 0, os.SEEK_SET)
            os.ftruncate(dst, 0)
            os.lseek(dst, 0, os.SEEK_SET)
    with open(src, "rb", closefd=False) as reader, open(dst, "wb", closefd=False) as writer:
        shutil.copyfileobj(reader, writer, _CHUNK)


def _copy_range(src: int, dst: int, size: int) -> None:
    copied = 0
    while True:
        # Ask for at least one chunk past the expected size so a grown file ends on a 0 return.
        done = os.copy_file_range(src, dst, max(size - copied, _CHUNK))
        if done == 0:
            return
        copied += done


def force_rmtree(path: Path) -> None:
    """Remove a tree we own, even where published read-only dirs (0555) block a non-root unlink.

    Links are never followed: modes are only changed on real directories found by lstat.
    """
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except PermissionError:
        pass
    _make_dirs_writable(path)
    shutil.rmtree(path, ignore_errors=True)


def _make_dirs_writable(root: Path) -> None:
    stack = [root]
    while stack:
        directory = stack.pop()
        with contextlib.suppress(OSError):
            directory.chmod(0o700)
            with os.scandir(directory) as listing:
                stack.extend(Path(e.path) for e in listing if e.is_dir(follow_symlinks=False))
