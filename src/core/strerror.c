/* Names of the values curfew returns. A table of static strings, so it is
 * safe from any thread and from a signal handler.
 *
 * SPDX-License-Identifier: MIT
 */
#include <curfew/core.h>

#include <errno.h>

const char *curfew_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case -EINVAL:
        return "-EINVAL: invalid argument";
    case -ENOMEM:
        return "-ENOMEM: out of memory";
    case -ENOENT:
        return "-ENOENT: no such blocker (unknown or recycled id)";
    case -EALREADY:
        return "-EALREADY: already done";
    case -EPERM:
        return "-EPERM: not allowed from this thread now";
    case -ESHUTDOWN:
        return "-ESHUTDOWN: too late, that part has shut down";
    case -ETIMEDOUT:
        return "-ETIMEDOUT: timed out";
    case -EPIPE:
        return "-EPIPE: the other side is closing or gone";
    case -EPROTO:
        return "-EPROTO: protocol violation";
    case -EBUSY:
        return "-EBUSY: a shutdown is in progress";
    case -ELOOP:
        return "-ELOOP: that would make a cycle";
    case -ECANCELED:
        return "-ECANCELED: cancelled";
    case -EIO:
        return "-EIO: input/output error";
    case -ENOSPC:
        return "-ENOSPC: no space left on device";
    case -EACCES:
        return "-EACCES: permission denied";
    case -EROFS:
        return "-EROFS: read-only file system";
    case -EAGAIN:
        return "-EAGAIN: try again";
    case -EINTR:
        return "-EINTR: interrupted";
    case -ECHILD:
        return "-ECHILD: no such child process";
    case -ESRCH:
        return "-ESRCH: no such process";
    case -EBADF:
        return "-EBADF: bad file descriptor";
    case -EEXIST:
        return "-EEXIST: already exists";
    case -ENOTCONN:
        return "-ENOTCONN: not connected";
    case -ECONNRESET:
        return "-ECONNRESET: connection reset by peer";
    case -EMSGSIZE:
        return "-EMSGSIZE: message too long";
    case -ENOSYS:
        return "-ENOSYS: not supported here";
    default:
        return err < 0 ? "unknown negative errno value" : "not an error code";
    }
}
