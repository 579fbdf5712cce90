/* SPDX-License-Identifier: MIT */
#include "core_util.h"
#include "harness.h"

#include <poll.h>

int cu_fd_readable(const curfew *cf)
{
    struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
    int r = poll(&p, 1, 0);
    return r > 0 && (p.revents & POLLIN);
}

int cu_pump(curfew *cf)
{
    int r = curfew_dispatch(cf);
    for (int i = 0; i < 100 && r == 0 && cu_fd_readable(cf); i++)
        r = curfew_dispatch(cf);
    return r;
}

int cu_drive(curfew *cf, int64_t ms, int cap_ms)
{
    int64_t end = th_now_ms() + ms;
    for (;;) {
        int r = curfew_dispatch(cf);
        if (r != 0)
            return r;
        int64_t left = end - th_now_ms();
        if (left <= 0)
            return 0;
        int t = curfew_timeout_ms(cf);
        if (t < 0 || t > left)
            t = (int)left;
        if (cap_ms > 0 && t > cap_ms)
            t = cap_ms;
        struct pollfd p = {.fd = curfew_fd(cf), .events = POLLIN};
        (void)poll(&p, 1, t);
    }
}
