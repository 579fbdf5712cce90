/* The child helper of the process tests: `--child pr_kid key=value...`, a
 * small curfew program that joins its parent with curfew_child_attach_opts()
 * and then does what its arguments say.
 *
 * SPDX-License-Identifier: MIT
 *
 * Keys (each optional):
 *   name=LABEL          process_name of the child's coordinator
 *   ready=FD            write one byte to FD once attached
 *   pidfile=PATH        write the pid to PATH once attached
 *   sleep=PHASE:MS      a blocker "sleep-MS" in PHASE done after MS ms by a
 *                       thread of its own (up to four of these)
 *   hang=PHASE:NAME     a blocker NAME in PHASE that never finishes
 *   stuck=PHASE         a trigger in PHASE that blocks the dispatching
 *                       thread for a minute
 *   flood=N:SIZE        in the phase "final", before FinishShutdown, send N
 *                       PR_MSG_FLOOD messages of SIZE bytes (>= 4: the
 *                       sequence number first)
 *   stamp=1             at BEGIN send PR_MSG_STAMP (mono ns, budget left)
 *   early=N             send N PR_MSG_EARLY right after attach
 *   echo=1              answer every PR_MSG_PING with a PR_MSG_PONG
 *   crash=WHEN:HOW      WHEN attach|begin|middle|finish, HOW
 *                       segv|abort|exit3|kill ("middle": a trigger in
 *                       persist; "finish": a trigger in persist, meant for
 *                       finish=drain fast=0)
 *   step=STEP           curfew__channel_crash_step (SIGKILL at that step)
 *   fast=0|1            fast_exit (default 1); exit=N its exit code
 *   finish=PHASE        finish_after
 *   rc=N                the status returned after a full teardown
 *   phase_crash=PHASE:MS crash_after_ms of that phase
 *   budget_margin=MS    budget_margin_ms
 *   timeout=exit|abort|continue   on_timeout
 *   report=PATH         report_path
 *   orphan=MS           orphan_budget_ms; orphan_code=N orphan_exit_code
 *   sigterm=ignore|handler  SIGTERM ignored, or a handler that calls
 *                       curfew_begin_from_signal()
 *   delay=MS            sleep MS ms before attaching
 *   attach_when_ppid=PID  before attaching, wait (up to 20 s, else exit
 *                       18) until the parent is PID: the one that started
 *                       it died and PID, a subreaper, took it over
 *   garbage=1           once attached and ready, write 16 bytes of 0xff
 *                       straight to the channel's descriptor (an
 *                       impossible frame length), then wait to be killed
 */
#define _GNU_SOURCE
#include "pr_util.h"

#include "channel/channel_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const default_phases[] = {
    "stop-accepting", "drain",   "children", "persist",
    "telemetry",      "threads", "final"};
#define NPHASES 7

static struct {
    curfew *cf;
    int ready_fd;
    const char *pidfile;
    const char *sleep_phase[4];
    int sleep_ms[4];
    int nsleep;
    const char *hang_phase, *hang_name;
    unsigned hang_many; /* more blockers like hang_name, with long names */
    const char *stuck_phase;
    unsigned flood_n;
    size_t flood_size;
    int stamp, echo;
    unsigned early;
    const char *crash_when, *crash_how;
    const char *step;
    int rc;
    const char *sigterm;
    int garbage;
    int delay;
    long attach_when_ppid;
} K = {.ready_fd = -1};

static void crash_now(const char *how)
{
    if (strcmp(how, "segv") == 0) {
        /* A real SIGSEGV, not the sanitizers' report-and-exit. */
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = SIG_DFL;
        sigaction(SIGSEGV, &sa, NULL);
        raise(SIGSEGV);
    } else if (strcmp(how, "abort") == 0) {
        abort();
    } else if (strcmp(how, "exit3") == 0) {
        _exit(3);
    } else {
        raise(SIGKILL);
    }
    _exit(99);
}

/* Splits "A:B" in place at the colon (B may be NULL): the arguments are
 * the process's own, writable strings. */
static char *split(char *v, const char **second)
{
    char *c = strchr(v, ':');
    *second = NULL;
    if (c) {
        *c = '\0';
        *second = c + 1;
    }
    return v;
}

typedef struct sleeper {
    curfew_blocker b;
    int ms;
} sleeper;

static void *sleep_thread(void *arg)
{
    sleeper *s = arg;
    th_sleep_ms(s->ms);
    curfew_blocker_done(s->b);
    free(s);
    return NULL;
}

static int sleep_trigger(curfew_blocker self, void *arg)
{
    sleeper *s = malloc(sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->b = self;
    s->ms = (int)(intptr_t)arg;
    curfew_blocker_status(self, "sleeping %d ms", s->ms);
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int r = pthread_create(&t, &at, sleep_thread, s);
    pthread_attr_destroy(&at);
    if (r) {
        free(s);
        return -r;
    }
    return CURFEW_PENDING;
}

static int hang_trigger(curfew_blocker self, void *arg)
{
    (void)arg;
    curfew_blocker_status(self, "waiting for the disk");
    return CURFEW_PENDING;
}

static int stuck_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    for (int i = 0; i < 600; i++)
        th_sleep_ms(100);
    return CURFEW_DONE;
}

static int flood_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    size_t size = K.flood_size < 4 ? 4 : K.flood_size;
    unsigned char *buf = calloc(1, size);
    if (!buf)
        return -ENOMEM;
    for (unsigned i = 0; i < K.flood_n; i++) {
        pr_put32(buf, i);
        int r = curfew_child_send(K.cf, PR_MSG_FLOOD, buf, size);
        if (r != 0) {
            fprintf(stderr, "pr_kid: curfew_child_send #%u: %s\n", i,
                    curfew_strerror(r));
            free(buf);
            return r;
        }
    }
    free(buf);
    return CURFEW_DONE;
}

static int crash_trigger(curfew_blocker self, void *arg)
{
    (void)self;
    (void)arg;
    crash_now(K.crash_how);
    return CURFEW_DONE;
}

static void on_event(const curfew_event *ev, void *arg)
{
    (void)arg;
    if (ev->type != CURFEW_EV_BEGIN)
        return;
    if (K.stamp) {
        unsigned char b[16];
        pr_put64(b, (uint64_t)pr_mono_ns());
        pr_put64(b + 8, (uint64_t)curfew_budget_left_ms(K.cf));
        int r = curfew_child_send(K.cf, PR_MSG_STAMP, b, sizeof(b));
        if (r != 0)
            fprintf(stderr, "pr_kid: stamp: %s\n", curfew_strerror(r));
    }
    if (K.crash_when && strcmp(K.crash_when, "begin") == 0)
        crash_now(K.crash_how);
}

static void on_parent_message(uint32_t type, const void *data, size_t len,
                              void *arg)
{
    (void)arg;
    if (K.echo && type == PR_MSG_PING) {
        int r = curfew_child_send(K.cf, PR_MSG_PONG, data, len);
        if (r != 0)
            fprintf(stderr, "pr_kid: answer to a ping: %s\n",
                    curfew_strerror(r));
    }
}

static void on_sigterm(int sig)
{
    (void)sig;
    curfew_begin_from_signal(K.cf);
}

static void add(const char *phase, const char *name, curfew_trigger_fn fn,
                void *arg)
{
    curfew_barrier *b = curfew_phase(K.cf, phase);
    int r = curfew_add_blocker(b, name, fn, arg, NULL);
    if (r != 0) {
        fprintf(stderr, "pr_kid: add %s to %s: %s\n", name, phase,
                curfew_strerror(r));
        _exit(11);
    }
}

CHILD(pr_kid)
{
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);

    curfew_phase_config phases[NPHASES];
    for (int i = 0; i < NPHASES; i++) {
        phases[i].name = default_phases[i];
        phases[i].warn_after_ms = 0;
        phases[i].crash_after_ms = 0;
    }
    curfew_config cfg = {0};
    cfg.phases = phases;
    cfg.phase_count = NPHASES;
    cfg.on_event = on_event;
    curfew_child_options co = {0};
    co.fast_exit = 1;
    co.on_message = on_parent_message;

    for (int i = 0; i < argc; i++) {
        char *a = argv[i];
        char *eq = strchr(a, '=');
        if (!eq) {
            fprintf(stderr, "pr_kid: bad argument %s\n", a);
            return 12;
        }
        size_t kl = (size_t)(eq - a);
        char *v = eq + 1;
        const char *second;
#define KEY(s) (kl == sizeof(s) - 1 && strncmp(a, s, kl) == 0)
        if (KEY("name")) {
            cfg.process_name = v;
        } else if (KEY("ready")) {
            K.ready_fd = atoi(v);
        } else if (KEY("pidfile")) {
            K.pidfile = v;
        } else if (KEY("sleep") && K.nsleep < 4) {
            K.sleep_phase[K.nsleep] = split(v, &second);
            K.sleep_ms[K.nsleep++] = second ? atoi(second) : 100;
        } else if (KEY("hang")) {
            K.hang_phase = split(v, &second);
            K.hang_name = second ? second : "stuck-db";
        } else if (KEY("hang_many")) {
            K.hang_many = (unsigned)strtoul(v, NULL, 10);
        } else if (KEY("stuck")) {
            K.stuck_phase = v;
        } else if (KEY("flood")) {
            split(v, &second);
            K.flood_n = (unsigned)strtoul(v, NULL, 10);
            K.flood_size = second ? strtoul(second, NULL, 10) : 4;
        } else if (KEY("stamp")) {
            K.stamp = atoi(v);
        } else if (KEY("early")) {
            K.early = (unsigned)atoi(v);
        } else if (KEY("echo")) {
            K.echo = atoi(v);
        } else if (KEY("crash")) {
            K.crash_when = split(v, &second);
            K.crash_how = second ? second : "segv";
        } else if (KEY("step")) {
            K.step = v;
        } else if (KEY("fast")) {
            co.fast_exit = atoi(v);
        } else if (KEY("exit")) {
            co.exit_code = atoi(v);
        } else if (KEY("finish")) {
            co.finish_after = v;
        } else if (KEY("rc")) {
            K.rc = atoi(v);
        } else if (KEY("phase_crash")) {
            const char *name = split(v, &second);
            for (int j = 0; j < NPHASES; j++)
                if (strcmp(phases[j].name, name) == 0)
                    phases[j].crash_after_ms = second ? atoi(second) : 0;
        } else if (KEY("budget_margin")) {
            cfg.budget_margin_ms = atoi(v);
        } else if (KEY("timeout")) {
            cfg.on_timeout = strcmp(v, "exit") == 0 ? CURFEW_TIMEOUT_EXIT
                             : strcmp(v, "continue") == 0
                                 ? CURFEW_TIMEOUT_CONTINUE
                                 : CURFEW_TIMEOUT_ABORT;
        } else if (KEY("report")) {
            cfg.report_path = v;
        } else if (KEY("record")) {
            cfg.record_path = v;
        } else if (KEY("exit_after")) {
            cfg.exit_after = v;
        } else if (KEY("orphan")) {
            co.orphan_budget_ms = atoi(v);
        } else if (KEY("orphan_code")) {
            co.orphan_exit_code = atoi(v);
        } else if (KEY("delay")) {
            K.delay = atoi(v);
        } else if (KEY("attach_when_ppid")) {
            K.attach_when_ppid = atol(v);
        } else if (KEY("garbage")) {
            K.garbage = atoi(v);
        } else if (KEY("sigterm")) {
            K.sigterm = v;
        } else {
            fprintf(stderr, "pr_kid: unknown key in %s\n", a);
            return 12;
        }
#undef KEY
    }

    int r = curfew_create(&K.cf, &cfg);
    if (r != 0) {
        fprintf(stderr, "pr_kid: curfew_create: %s\n", curfew_strerror(r));
        return 13;
    }
    for (int i = 0; i < K.nsleep; i++) {
        char name[32];
        snprintf(name, sizeof(name), "sleep-%d", K.sleep_ms[i]);
        add(K.sleep_phase[i], name, sleep_trigger,
            (void *)(intptr_t)K.sleep_ms[i]);
    }
    if (K.hang_phase)
        add(K.hang_phase, K.hang_name, hang_trigger, NULL);
    for (unsigned i = 0; K.hang_phase && i < K.hang_many; i++) {
        char name[160];
        snprintf(name, sizeof(name),
                 "%s-%05u-waiting-for-a-slow-disk-to-flush-its-write-cache-"
                 "before-the-process-may-exit",
                 K.hang_name, i);
        add(K.hang_phase, name, hang_trigger, NULL);
    }
    if (K.stuck_phase)
        add(K.stuck_phase, "stuck-main", stuck_trigger, NULL);
    if (K.flood_n)
        add("final", "flood", flood_trigger, NULL);
    if (K.crash_when && (strcmp(K.crash_when, "middle") == 0 ||
                         strcmp(K.crash_when, "finish") == 0))
        add("persist", "crash", crash_trigger, NULL);
    if (K.sigterm) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = strcmp(K.sigterm, "ignore") == 0 ? SIG_IGN : on_sigterm;
        sigaction(SIGTERM, &sa, NULL);
    }
    if (K.step)
        curfew__channel_crash_step = K.step;

    if (K.delay)
        th_sleep_ms(K.delay);
    if (K.attach_when_ppid) {
        int64_t end = th_now_ms() + 20000;
        while ((long)getppid() != K.attach_when_ppid) {
            if (th_now_ms() > end) {
                fprintf(stderr, "pr_kid: parent %ld, never %ld\n",
                        (long)getppid(), K.attach_when_ppid);
                return 18;
            }
            th_sleep_ms(2);
        }
    }
    r = curfew_child_attach_opts(K.cf, &co);
    if (r != 0) {
        fprintf(stderr, "pr_kid: curfew_child_attach_opts: %s\n",
                curfew_strerror(r));
        return 14;
    }
    if (K.pidfile) {
        char text[32];
        int n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
        int fd =
            open(K.pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0) {
            ssize_t w = write(fd, text, (size_t)n);
            (void)w;
            close(fd);
        }
    }
    for (unsigned i = 0; i < K.early; i++) {
        unsigned char b[4];
        pr_put32(b, i);
        r = curfew_child_send(K.cf, PR_MSG_EARLY, b, sizeof(b));
        if (r != 0)
            fprintf(stderr, "pr_kid: early #%u: %s\n", i, curfew_strerror(r));
    }
    if (K.ready_fd >= 0) {
        ssize_t w = write(K.ready_fd, "r", 1);
        (void)w;
        close(K.ready_fd);
    }
    if (K.crash_when && strcmp(K.crash_when, "attach") == 0)
        crash_now(K.crash_how);
    if (K.garbage) {
        /* Behind the channel's back: its frames so far are whole. */
        th_sleep_ms(100);
        unsigned char junk[16];
        memset(junk, 0xff, sizeof(junk));
        ssize_t w =
            write(atoi(getenv(CURFEW_CHANNEL_FD_ENV)), junk, sizeof(junk));
        (void)w;
        th_sleep_ms(30000);
        _exit(17);
    }

    r = curfew_run(K.cf);
    if (r != 0) {
        fprintf(stderr, "pr_kid: curfew_run: %s\n", curfew_strerror(r));
        return 15;
    }
    r = curfew_destroy(K.cf);
    if (r != 0) {
        fprintf(stderr, "pr_kid: curfew_destroy: %s\n", curfew_strerror(r));
        return 16;
    }
    return K.rc;
}

/* A child that never looks at its channel (`--child pr_deaf`): it neither
 * attaches nor reads, and dies with the test process if that fails. */
CHILD(pr_deaf)
{
    (void)argc;
    (void)argv;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    th_sleep_ms(60000);
    return 0;
}
