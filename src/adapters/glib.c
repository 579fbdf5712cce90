/* The GLib adapter (S4): a GSource that watches curfew_fd() and
 * curfew_timeout_ms() and calls curfew_dispatch().
 *
 * SPDX-License-Identifier: MIT
 *
 * Written against the public API only. A holder stored with
 * curfew_ext_set() keeps a reference to the coordinator's source, so that
 * curfew_glib_detach() needs only cf and curfew_destroy() removes a source
 * a program forgot.
 */
#include <curfew/glib.h>

#include <errno.h>
#include <stdlib.h>

typedef struct cf_source {
    GSource base;
    curfew *cf;
    gpointer tag; /* from g_source_add_unix_fd() */
} cf_source;

typedef struct holder {
    GMutex lock;
    GSource *src; /* our reference; NULL when detached */
} holder;

static const char g_ext_key = 0;

static gboolean src_prepare(GSource *s, gint *timeout)
{
    cf_source *c = (cf_source *)s;
    int t = curfew_timeout_ms(c->cf);
    *timeout = t;
    return t == 0;
}

static gboolean src_check(GSource *s)
{
    cf_source *c = (cf_source *)s;
    if (g_source_query_unix_fd(s, c->tag) & (G_IO_IN | G_IO_ERR | G_IO_HUP))
        return TRUE;
    return curfew_timeout_ms(c->cf) == 0;
}

static gboolean src_dispatch(GSource *s, GSourceFunc callback,
                             gpointer user_data)
{
    (void)callback;
    (void)user_data;
    cf_source *c = (cf_source *)s;
    /* Once the shutdown completed there is nothing left to drive. */
    return curfew_dispatch(c->cf) == 1 ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static GSourceFuncs g_funcs = {
    .prepare = src_prepare,
    .check = src_check,
    .dispatch = src_dispatch,
};

static void drop_source(holder *h)
{
    if (h->src) {
        g_source_destroy(h->src);
        g_source_unref(h->src);
        h->src = NULL;
    }
}

static void free_holder(void *ptr)
{
    holder *h = ptr;
    drop_source(h);
    g_mutex_clear(&h->lock);
    free(h);
}

int curfew_glib_attach(curfew *cf, GMainContext *context)
{
    if (!cf)
        return -EINVAL;
    if (curfew_is_complete(cf))
        return -ESHUTDOWN;
    holder *h = curfew_ext_get(cf, &g_ext_key);
    if (!h) {
        h = calloc(1, sizeof(*h));
        if (!h)
            return -ENOMEM;
        g_mutex_init(&h->lock);
        int err = curfew_ext_set(cf, &g_ext_key, h, free_holder);
        if (err) {
            g_mutex_clear(&h->lock);
            free(h);
            if (err != -EEXIST)
                return err;
            h = curfew_ext_get(cf, &g_ext_key); /* a racing attach */
        }
    }
    g_mutex_lock(&h->lock);
    if (h->src && !g_source_is_destroyed(h->src)) {
        g_mutex_unlock(&h->lock);
        return -EALREADY;
    }
    drop_source(h);
    GSource *s = g_source_new(&g_funcs, sizeof(cf_source));
    cf_source *c = (cf_source *)s;
    c->cf = cf;
    c->tag = g_source_add_unix_fd(s, curfew_fd(cf), G_IO_IN);
    g_source_set_name(s, "curfew");
    g_source_set_priority(s, G_PRIORITY_DEFAULT);
    h->src = s; /* the reference g_source_new() gave */
    g_source_attach(s, context);
    g_mutex_unlock(&h->lock);
    return 0;
}

int curfew_glib_detach(curfew *cf)
{
    if (!cf)
        return -EINVAL;
    holder *h = curfew_ext_get(cf, &g_ext_key);
    if (!h)
        return -ENOENT;
    g_mutex_lock(&h->lock);
    drop_source(h);
    g_mutex_unlock(&h->lock);
    return 0;
}
