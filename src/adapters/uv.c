/* The libuv adapter (S4): a uv_poll_t on curfew_fd() and a uv_timer_t for
 * curfew_timeout_ms(), both calling curfew_dispatch() on the loop's thread.
 *
 * SPDX-License-Identifier: MIT
 *
 * Written against the public API only. The handles live in an attachment
 * that is freed by the last close callback; a small holder stored with
 * curfew_ext_set() remembers the attachment of a coordinator, so that
 * curfew_uv_detach() needs only cf and curfew_destroy() can close handles a
 * program forgot.
 */
#include <curfew/uv.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct holder holder;

typedef struct attachment {
    curfew *cf;
    holder *h; /* NULL once detached */
    uv_poll_t poll;
    uv_timer_t timer;
    int open; /* handles not closed yet */
    int closing;
} attachment;

struct holder {
    attachment *cur; /* NULL when not attached */
};

static const char g_ext_key = 0;

static void on_closed(uv_handle_t *handle)
{
    attachment *a = handle->data;
    if (--a->open == 0)
        free(a);
}

static void close_attachment(attachment *a)
{
    if (a->closing)
        return;
    a->closing = 1;
    if (a->h)
        a->h->cur = NULL;
    a->h = NULL;
    uv_close((uv_handle_t *)&a->poll, on_closed);
    uv_close((uv_handle_t *)&a->timer, on_closed);
}

/* Referenced only once the shutdown has begun: before, an idle loop may
 * end (C6: curfew has nothing to do until then). */
static void set_refs(attachment *a)
{
    if (curfew_current_phase(a->cf)) {
        uv_ref((uv_handle_t *)&a->poll);
        uv_ref((uv_handle_t *)&a->timer);
    } else {
        uv_unref((uv_handle_t *)&a->poll);
        uv_unref((uv_handle_t *)&a->timer);
    }
}

static void on_timer(uv_timer_t *timer);

static void arm_timer(attachment *a)
{
    int t = curfew_timeout_ms(a->cf);
    if (t < 0)
        uv_timer_stop(&a->timer);
    else
        uv_timer_start(&a->timer, on_timer, (uint64_t)t, 0);
}

static void drive(attachment *a)
{
    int r = curfew_dispatch(a->cf);
    if (a->closing) /* detached from a callback */
        return;
    if (r == 1) {
        close_attachment(a); /* the shutdown completed: nothing to drive */
        return;
    }
    set_refs(a);
    arm_timer(a);
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    (void)events;
    attachment *a = poll->data;
    if (status < 0) {
        fprintf(stderr, "curfew-uv: polling curfew_fd failed: %s\n",
                uv_strerror(status));
        uv_poll_stop(poll);
    }
    drive(a);
}

static void on_timer(uv_timer_t *timer)
{
    drive(timer->data);
}

/* curfew_destroy(): handles still open are closed (on the loop's thread,
 * where curfew_destroy() must then be called). */
static void free_holder(void *ptr)
{
    holder *h = ptr;
    if (h->cur)
        close_attachment(h->cur);
    free(h);
}

int curfew_uv_attach(curfew *cf, uv_loop_t *loop)
{
    if (!cf || !loop)
        return -EINVAL;
    if (curfew_is_complete(cf))
        return -ESHUTDOWN;
    holder *h = curfew_ext_get(cf, &g_ext_key);
    if (h && h->cur)
        return -EALREADY;
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h)
            return -ENOMEM;
        int err = curfew_ext_set(cf, &g_ext_key, h, free_holder);
        if (err) {
            free(h);
            return err == -EEXIST ? -EALREADY : err;
        }
    }
    attachment *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->cf = cf;
    int err = uv_poll_init(loop, &a->poll, curfew_fd(cf));
    if (err) {
        free(a);
        return err;
    }
    a->poll.data = a;
    a->open = 1;
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    a->open = 2;
    a->h = h;
    h->cur = a;
    err = uv_poll_start(&a->poll, UV_READABLE, on_poll);
    if (err) {
        close_attachment(a);
        return err;
    }
    set_refs(a);
    arm_timer(a);
    return 0;
}

int curfew_uv_detach(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    holder *h = curfew_ext_get(cf, &g_ext_key);
    if (!h)
        return -ENOENT;
    if (h->cur)
        close_attachment(h->cur);
    return 0;
}
