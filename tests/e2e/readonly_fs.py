#!/usr/bin/env python3
"""A pass-through FUSE file system over a backing directory that can turn read-only under the
processes using it, for test_full_disk.py: while the file CONTROL exists, every change fails with
EROFS (writes and fsyncs on files already open too, as when the kernel forces a file system
read-only after an error); once it is removed, changes go through again. A plain
`mount -o remount,ro` cannot do that: the kernel refuses it (EBUSY) while a process holds a file
open for writing, as kvd always does.

Run as: python3 readonly_fs.py BACKING MOUNTPOINT CONTROL   (root; in the foreground until
unmounted). Needs python3-fusepy (Debian) and /dev/fuse."""
import errno
import os
import sys

from fusepy import FUSE, FuseOSError, Operations

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class ReadOnlyToggle(Operations):
    def __init__(self, backing, control):
        self.backing = os.path.realpath(backing)
        self.control = control

    def _path(self, path):
        return os.path.join(self.backing, path.lstrip("/"))

    def _change(self):
        if os.path.exists(self.control):
            raise FuseOSError(errno.EROFS)

    def __call__(self, op, *args):
        try:
            return super().__call__(op, *args)
        except OSError as e:
            raise FuseOSError(e.errno or errno.EIO) from None

    # Reads.
    def access(self, path, mode):
        if not os.access(self._path(path), mode):
            raise FuseOSError(errno.EACCES)

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        return {k: getattr(st, k) for k in ("st_atime", "st_ctime", "st_gid", "st_mode",
                                            "st_mtime", "st_nlink", "st_size", "st_uid")}

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._path(path))

    def readlink(self, path):
        return os.readlink(self._path(path))

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        return {k: getattr(st, k) for k in ("f_bavail", "f_bfree", "f_blocks", "f_bsize",
                                            "f_favail", "f_ffree", "f_files", "f_flag",
                                            "f_frsize", "f_namemax")}

    def open(self, path, flags):
        if flags & WRITE_FLAGS:
            self._change()
        return os.open(self._path(path), flags)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def release(self, path, fh):
        os.close(fh)

    def flush(self, path, fh):
        pass

    # Changes.
    def create(self, path, mode, fi=None):
        self._change()
        return os.open(self._path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)

    def write(self, path, data, offset, fh):
        self._change()
        return os.pwrite(fh, data, offset)

    def fsync(self, path, datasync, fh):
        self._change()
        (os.fdatasync if datasync else os.fsync)(fh)

    def fsyncdir(self, path, datasync, fh):
        self._change()

    def _changed(self, fn, path, *args):
        self._change()
        return fn(self._path(path), *args)

    def truncate(self, path, length, fh=None):
        return self._changed(os.truncate, path, length)

    def unlink(self, path):
        return self._changed(os.unlink, path)

    def mkdir(self, path, mode):
        return self._changed(os.mkdir, path, mode)

    def rmdir(self, path):
        return self._changed(os.rmdir, path)

    def chmod(self, path, mode):
        return self._changed(os.chmod, path, mode)

    def chown(self, path, uid, gid):
        return self._changed(os.chown, path, uid, gid)

    def utimens(self, path, times=None):
        return self._changed(os.utime, path, times)

    def rename(self, old, new):
        self._change()
        os.rename(self._path(old), self._path(new))

    def link(self, target, source):
        self._change()
        os.link(self._path(source), self._path(target))

    def symlink(self, target, source):
        self._change()
        os.symlink(source, self._path(target))


def main():
    backing, mountpoint, control = sys.argv[1:4]
    FUSE(ReadOnlyToggle(backing, control), mountpoint, foreground=True, nothreads=False,
         big_writes=True)


if __name__ == "__main__":
    main()
