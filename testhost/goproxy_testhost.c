//go:build ignore

// The constraint above keeps the go tool from treating this file as part of
// package testhost (a package without cgo may not hold C files); it is
// compiled on its own by cc.

/*
 * goproxy-testhost: a test host for Fluent Bit Go input plugins.
 *
 * It is NOT Fluent Bit. It loads a Go input plugin built as a c-shared
 * library and drives it the way Fluent Bit 5.1's Go proxy does, so that the
 * plugin's ABI, threading and lifecycle can be tested without Fluent Bit.
 * Everything below is written for this project; each behaviour names the
 * Fluent Bit source file it mirrors.
 *
 *   goproxy-testhost -o OUT.msgpack [-F FLUSH_MS] [-p key=value]... PLUGIN.so
 *   goproxy-testhost [-C] -o OUT1 [-p k=v]... [-i -o OUT2 [-p k=v]...]... PLUGIN.so
 *
 * -i starts the next [INPUT] section of the plugin; -C makes the host a
 * Fluent Bit older than 4.1 (no Ctx callbacks). Either runs the instances
 * as multi_main describes (the section "several instances" below).
 *
 * OUT receives, raw and concatenated, every buffer a collect hands over:
 * exactly the bytes Fluent Bit would pass to flb_input_log_append(). OUT is
 * what an output has sent, so what it holds survives a kill of the host.
 *
 * Storage of one instance (without -i and -C; several instances write each
 * collect straight to their OUT), as the input's storage.type (a key Fluent
 * Bit's core consumes, as this host does; the plugin never sees it):
 *   memory      appended buffers wait in memory, as Fluent Bit's chunks do
 *               for its engine's flush, and an "output" thread writes them
 *               to OUT every FLUSH_MS (-F, default 1000: Fluent Bit's
 *               Flush). A kill loses what waits; an exit writes it first,
 *               as Fluent Bit's grace period flushes the outputs before the
 *               exit callbacks.
 *   filesystem  (and when storage.type is not set) appended buffers go to
 *               OUT at once: a chunk Fluent Bit keeps in a file is sent
 *               after a kill too, so nothing appended is lost. (Fluent Bit
 *               5.1.1 itself passes a threaded input's appends through a
 *               ring buffer drained every 250 ms, which a kill loses; this
 *               host models the storage, not that buffer.)
 *
 * Commands on stdin, one per line: pause, resume, exit (also on EOF of stdin
 * and on SIGTERM/SIGINT). Each is answered with "ok <command>" once done.
 *
 * Lines on stderr that tests parse (anything else is informative):
 *   registered name=<name> type=<t> proxy=<p> flags=<f> event_type=<e>
 *   goroutines baseline=<n>          (only if DockerLogsGoroutines is exported)
 *   init ok | init failed            (init failed: exit code 3)
 *   collect bytes=<n>                (after the append and the cleanup callback)
 *   out bytes=<n>                    (after the bytes are in OUT)
 *   ok pause | ok resume
 *   exit took_ms=<n> goroutines=<m> at_return=<r> settle_ms=<s>
 *                                    (m, r are -1 without DockerLogsGoroutines)
 *
 * Exit codes: 0 after exit, 1 I/O error, 2 usage/load/register error,
 * 3 init failed, 4 the plugin broke the collect contract.
 *
 * Build: cc -O2 -Wall -Wextra -o build/goproxy-testhost \
 *            testhost/goproxy_testhost.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* Constants of include/fluent-bit/flb_plugin_proxy.h and fluent-bit-go. */
#define PROXY_INPUT_PLUGIN 1
#define PROXY_GOLANG 11

/* src/flb_plugin_proxy.c: PROXY_CALLBACK_TIME, the collect interval. */
#define COLLECT_INTERVAL_SEC 1

enum {
    EXIT_IO = 1,
    EXIT_USAGE = 2,
    EXIT_INIT_FAILED = 3,
    EXIT_CONTRACT = 4,
};

/*
 * struct flb_plugin_proxy_def, include/fluent-bit/flb_plugin_proxy.h.
 * fluent-bit-go declares only the first five fields; Fluent Bit allocates
 * the whole struct zeroed (flb_calloc in flb_plugin_proxy_create), so the
 * plugin leaves event_type 0 and config_map NULL.
 */
struct proxy_def {
    int type;
    int proxy;
    int flags;
    char *name;
    char *description;
    int event_type;
    void *config_map;
};

/*
 * struct flb_plugin_input_proxy_context, include/fluent-bit/flb_plugin_proxy.h:
 * what plugin->context points at. Fluent Bit allocates it zeroed in
 * flb_input_new (src/flb_input.c) and sets coll_fd only after the plugin's
 * init returned. fluent-bit-go's input header declares it as
 * {void *remote_context} instead, which reads coll_fd's bytes.
 */
struct input_proxy_context {
    int coll_fd;
    void *remote_context;
    void *proxy;
};

/*
 * struct flb_api, include/fluent-bit/flb_api.h (all fields, in order; the
 * instance pointers are opaque to a plugin). fluent-bit-go's input header
 * declares {char *_; input_get_property}, i.e. the first two slots.
 */
struct host_api {
    const char *(*output_get_property)(const char *, void *);
    const char *(*input_get_property)(const char *, void *);
    void *(*output_get_cmt_instance)(void *);
    void *(*input_get_cmt_instance)(void *);
    void (*log_print)(int, const char *, int, const char *, ...);
    int (*input_log_check)(void *, int);
    int (*output_log_check)(void *, int);
    const char *(*custom_get_property)(const char *, void *);
    int (*custom_log_check)(void *, int);
};

/*
 * struct flbgo_input_plugin, src/proxy/go/go.h: what FLBPluginInit gets.
 * fluent-bit-go reads the first four fields (it names the first one '_').
 */
struct go_input_plugin {
    char *name;
    struct host_api *api;
    void *i_ins;
    struct input_proxy_context *context;

    int (*cb_init)(struct go_input_plugin *);
    int (*cb_collect)(void **, size_t *);
    int (*cb_collect_ctx)(void *, void **, size_t *);
    int (*cb_cleanup)(void *);
    int (*cb_cleanup_ctx)(void *, void *);
    int (*cb_exit)(void);
};

/* One -p property, as flb_input_set_property (src/flb_input.c) stores it. */
struct property {
    char *key;
    char *val; /* NULL when the value is empty: the plugin gets NULL */
};

/* The input instance: opaque to the plugin, passed back to get_property. */
struct instance {
    struct property *props;
    size_t nprops;
};

/* Symbols of the plugin, resolved as flb_plugin_proxy_symbol does. */
struct plugin_syms {
    int (*pre_register)(int);
    int (*do_register)(struct proxy_def *);
    void (*unregister)(struct proxy_def *);
    void (*pause)(void);
    void (*resume)(void);
    int (*pre_run)(int);
    void (*pre_exit)(int);
    int (*goroutines)(void);
};

/* Commands from the main thread to the input thread. */
enum { CMD_PAUSE = 'p', CMD_RESUME = 'r', CMD_EXIT = 'x' };

static struct plugin_syms syms;
static struct go_input_plugin plugin;
static struct host_api api;
static struct input_proxy_context proxy_ctx;
static struct instance ins;
static int out_fd = -1;

/* storage.type memory: appended buffers wait in pending until the output
 * thread, or the exit, writes them to OUT. Guarded by pending_mu. */
struct pending_buf {
    struct pending_buf *next;
    size_t size;
    char data[];
};
static int storage_memory;
static int flush_ms = 1000;
static pthread_mutex_t pending_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pending_buf *pending_head, **pending_tail = &pending_head;

/* Input thread <-> main thread. */
static int cmd_pipe[2];  /* main writes a command byte, input thread reads */
static int ack_pipe[2];  /* input thread writes one byte per command done */
static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t init_cv = PTHREAD_COND_INITIALIZER;
static int init_status; /* 0 pending, 1 ok, -1 failed; guarded by init_mu */

/*
 * say writes one line to stderr with a single write(2), so lines of the
 * host and of the plugin's own logging never interleave mid-line.
 */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t) n > sizeof(buf) - 2) {
        n = sizeof(buf) - 2;
    }
    buf[n++] = '\n';
    while (write(STDERR_FILENO, buf, n) < 0 && errno == EINTR) {
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Goroutine counts. The Go runtime's count moves on its own for a moment:
 * right after dlopen the goroutine that ran the package inits may not have
 * ended yet, and a goroutine that has signalled its WaitGroup, or a
 * net/http connection goroutine whose connection was just closed, is still
 * counted until it has returned. So the baseline is the lowest of a few
 * readings, and the count after exit is read again until it is back to the
 * baseline or SETTLE_MAX_MS have passed: what is left then outlived
 * FLBPluginExit for real.
 */
#define SAMPLE_INTERVAL_MS 5
#define BASELINE_SAMPLES 10
#define SETTLE_MAX_MS 1000

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int goroutine_baseline(void)
{
    int i, n, low;

    low = syms.goroutines();
    for (i = 1; i < BASELINE_SAMPLES; i++) {
        sleep_ms(SAMPLE_INTERVAL_MS);
        n = syms.goroutines();
        if (n < low) {
            low = n;
        }
    }
    return low;
}

/* Returns the settled count; *settle_ms is how long it took to settle. */
static int goroutines_settled(int baseline, int64_t *settle_ms)
{
    int64_t t0 = now_ms();
    int n = syms.goroutines();

    while (n > baseline && now_ms() - t0 < SETTLE_MAX_MS) {
        sleep_ms(SAMPLE_INTERVAL_MS);
        n = syms.goroutines();
    }
    *settle_ms = now_ms() - t0;
    return n;
}

/* ---- properties -------------------------------------------------------- */

/*
 * Keys Fluent Bit's core consumes for every input instance; they never reach
 * the plugin (the first branches of flb_input_set_property, src/flb_input.c;
 * net.* and oauth2* are kept in lists of their own).
 */
static const char *const core_keys[] = {
    "tag", "log_level", "log_suppress_interval", "routable", "alias",
    "mem_buf_limit", "listen", "host", "port", "ipv6",
    "tls", "tls.verify", "tls.verify_client_cert", "tls.verify_hostname",
    "tls.debug", "tls.vhost", "tls.ca_path", "tls.ca_file", "tls.crt_file",
    "tls.key_file", "tls.key_passwd", "tls.min_version", "tls.max_version",
    "tls.ciphers", "storage.type", "threaded", "thread.ring_buffer.capacity",
    "thread.ring_buffer.window", "rate_window", "rate_gate",
    "rate_gate.max_bytes", "rate_gate.max_records", "rate_gate.backpressure",
    "rate_gate.resume_ratio", "storage.pause_on_chunks_overlimit",
};

static int is_core_key(const char *k)
{
    size_t i;

    if (strncasecmp(k, "net.", 4) == 0 || strncasecmp(k, "oauth2", 6) == 0) {
        return 1;
    }
    for (i = 0; i < sizeof(core_keys) / sizeof(core_keys[0]); i++) {
        if (strcasecmp(k, core_keys[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Trims spaces in place, as flb_cf_section_property_add does (flb_sds_trim). */
static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t') {
        s++;
    }
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t')) {
        *--end = '\0';
    }
    return s;
}

/*
 * add_property mirrors `-p key=value` in src/fluent-bit.c (set_property: split
 * at the first '=', key lowercased by flb_cf_key_translate for the classic
 * format, both trimmed) and flb_input_set_property: an empty value is stored
 * as NULL, core keys are consumed, duplicates are appended (the first wins on
 * lookup). ${VAR} expansion (flb_env_var_translate) is not mirrored.
 */
static int add_property(char *kv)
{
    char *eq = strchr(kv, '=');
    char *k, *v, *p;
    struct property *grown;

    if (eq == NULL) {
        return -1;
    }
    *eq = '\0';
    k = trim(kv);
    v = trim(eq + 1);
    if (*k == '\0') {
        return -1;
    }
    for (p = k; *p; p++) {
        *p = (char) tolower((unsigned char) *p);
    }
    if (strcmp(k, "storage.type") == 0) {
        if (strcasecmp(v, "memory") == 0) {
            storage_memory = 1;
        }
        else if (strcasecmp(v, "filesystem") != 0) {
            return -1;
        }
    }
    if (is_core_key(k)) {
        say("testhost: property %s is consumed by Fluent Bit's core; the plugin never sees it", k);
        return 0;
    }
    grown = realloc(ins.props, (ins.nprops + 1) * sizeof(*grown));
    if (grown == NULL) {
        return -1;
    }
    ins.props = grown;
    ins.props[ins.nprops].key = k;
    ins.props[ins.nprops].val = *v ? v : NULL;
    ins.nprops++;
    return 0;
}

/*
 * input_get_property mirrors flb_input_get_property -> flb_kv_get_key_value
 * (src/flb_input.c, src/flb_kv.c): NULL for a NULL or empty key, otherwise the
 * first property whose key has the same length and matches case-insensitively;
 * NULL when unset. fluent-bit-go turns NULL into "" (C.GoString).
 */
static const char *input_get_property(const char *key, void *instance)
{
    struct instance *in = instance;
    size_t i, len;

    if (key == NULL || (len = strlen(key)) == 0) {
        return NULL;
    }
    for (i = 0; i < in->nprops; i++) {
        if (strlen(in->props[i].key) == len &&
            strncasecmp(in->props[i].key, key, len) == 0) {
            return in->props[i].val;
        }
    }
    return NULL;
}

/* The rest of struct flb_api (src/flb_api.c), enough for a Go input. */
static const char *no_property(const char *key, void *instance)
{
    (void) key;
    (void) instance;
    return NULL;
}

static void *no_cmt(void *instance)
{
    (void) instance;
    return NULL;
}

static void log_print(int type, const char *file, int line, const char *fmt, ...)
{
    char buf[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    say("plugin log_print type=%d %s:%d: %s", type, file ? file : "?", line, buf);
}

static int log_check(void *instance, int level)
{
    (void) instance;
    (void) level;
    return 1;
}

/* ---- loading ----------------------------------------------------------- */

/* flb_plugin_proxy_symbol (src/flb_plugin_proxy.c): NULL if not exported. */
static void *symbol(void *dso, const char *name)
{
    void *s;

    dlerror();
    s = dlsym(dso, name);
    if (dlerror() != NULL) {
        return NULL;
    }
    return s;
}

static void resolve(void *dso)
{
    /* Hooks of src/flb_plugin_proxy.c. */
    syms.pre_register = symbol(dso, "FLBPluginPreRegister");
    syms.do_register = symbol(dso, "FLBPluginRegister");
    syms.unregister = symbol(dso, "FLBPluginUnregister");
    syms.pause = symbol(dso, "FLBPluginInputPause");
    syms.resume = symbol(dso, "FLBPluginInputResume");
    syms.pre_run = symbol(dso, "FLBPluginInputPreRun");
    syms.pre_exit = symbol(dso, "FLBPluginInputPreExit");
    /* This project's test-only export. */
    syms.goroutines = symbol(dso, "DockerLogsGoroutines");

    /* proxy_go_input_register (src/proxy/go/go.c). */
    plugin.cb_init = symbol(dso, "FLBPluginInit");
    plugin.cb_collect = symbol(dso, "FLBPluginInputCallback");
    plugin.cb_collect_ctx = symbol(dso, "FLBPluginInputCallbackCtx");
    plugin.cb_cleanup = symbol(dso, "FLBPluginInputCleanupCallback");
    plugin.cb_cleanup_ctx = symbol(dso, "FLBPluginInputCleanupCallbackCtx");
    plugin.cb_exit = symbol(dso, "FLBPluginExit");
}

/* ---- the input thread -------------------------------------------------- */

/*
 * The collect timer, as mk_event_timeout_create (lib/monkey/mk_core/
 * mk_event_epoll.c) makes it for flb_input_set_collector_time: a monotonic
 * timerfd that first expires at floor(now) + interval (so a little early,
 * never late), then every interval. Pausing destroys it; resuming makes a new one
 * (flb_input_collector_pause/resume, src/flb_input.c).
 */
static int timer_start(void)
{
    struct itimerspec its;
    struct timespec now;
    int fd;

    clock_gettime(CLOCK_MONOTONIC, &now);
    memset(&its, 0, sizeof(its));
    its.it_interval.tv_sec = COLLECT_INTERVAL_SEC;
    its.it_value.tv_sec = now.tv_sec + COLLECT_INTERVAL_SEC;
    fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    if (timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void write_all(int fd, const char *p, size_t n)
{
    ssize_t w;

    while (n > 0) {
        w = write(fd, p, n);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            say("testhost: write OUT: %s", strerror(errno));
            _exit(EXIT_IO);
        }
        p += w;
        n -= (size_t) w;
    }
}

/*
 * flush_pending writes what waits in memory to OUT, in append order: the
 * output thread's flush, and the flush of the grace period at exit.
 */
static void flush_pending(void)
{
    struct pending_buf *b, *next;
    size_t total = 0;

    pthread_mutex_lock(&pending_mu);
    b = pending_head;
    pending_head = NULL;
    pending_tail = &pending_head;
    for (; b != NULL; b = next) {
        next = b->next;
        write_all(out_fd, b->data, b->size);
        total += b->size;
        free(b);
    }
    /* Said under the lock: "out" lines come in the order of OUT's bytes. */
    if (total > 0) {
        say("out bytes=%zu", total);
    }
    pthread_mutex_unlock(&pending_mu);
}

/* The output thread of storage.type memory. */
static void *output_thread(void *arg)
{
    (void) arg;
    for (;;) {
        sleep_ms(flush_ms);
        flush_pending();
    }
    return NULL;
}

/* append takes one collect's bytes as flb_input_log_append does: into
 * memory or, for a chunk kept in a file, straight to OUT. */
static void append(const void *data, size_t size)
{
    struct pending_buf *b;

    if (!storage_memory) {
        pthread_mutex_lock(&pending_mu);
        write_all(out_fd, data, size);
        say("out bytes=%zu", size);
        pthread_mutex_unlock(&pending_mu);
        return;
    }
    b = malloc(sizeof(*b) + size);
    if (b == NULL) {
        say("testhost: out of memory");
        _exit(EXIT_IO);
    }
    b->next = NULL;
    b->size = size;
    memcpy(b->data, data, size);
    pthread_mutex_lock(&pending_mu);
    *pending_tail = b;
    pending_tail = &b->next;
    pthread_mutex_unlock(&pending_mu);
}

/*
 * Hands an appended buffer back to the plugin as Fluent Bit does: through
 * the Ctx callback where the host calls those (ctx_callbacks) and the
 * plugin exports it, else the plain one, else the host frees it.
 */
static int cleanup_buffer(void *remote_context, int ctx_callbacks, void *data)
{
    if (ctx_callbacks && plugin.cb_cleanup_ctx) {
        return plugin.cb_cleanup_ctx(remote_context, data);
    }
    if (plugin.cb_cleanup) {
        return plugin.cb_cleanup(data);
    }
    free(data);
    return 0;
}

/*
 * collect mirrors flb_proxy_input_cb_collect (src/flb_plugin_proxy.c) with
 * proxy_go_input_collect/_cleanup (src/proxy/go/go.c): the Ctx variants win
 * when exported; size 0 returns at once, WITHOUT the cleanup callback (a
 * non-NULL buffer is leaked there); a return of -1 drops the buffer, also
 * without cleanup; otherwise the bytes are appended, then cleaned up by the
 * plugin's callback or, if it exports none, by free().
 */
static void collect(void)
{
    void *data = NULL;
    size_t size = 0;
    int ret;

    if (plugin.cb_collect_ctx) {
        ret = plugin.cb_collect_ctx(proxy_ctx.remote_context, &data, &size);
    }
    else {
        ret = plugin.cb_collect(&data, &size);
    }

    if (size == 0) {
        if (data != NULL) {
            say("testhost: collect returned size 0 with a buffer: Fluent Bit "
                "calls no cleanup then, so it leaks");
        }
        return;
    }
    if (ret == -1) {
        say("testhost: collect returned -1 with %zu bytes: Fluent Bit drops "
            "them without cleanup", size);
        return;
    }
    if (data == NULL) {
        say("testhost: collect returned size %zu with a NULL buffer: Fluent "
            "Bit would crash", size);
        _exit(EXIT_CONTRACT);
    }

    /* flb_input_log_append(ins, NULL, 0, data, len) */
    append(data, size);

    if (cleanup_buffer(proxy_ctx.remote_context, 1, data) == -1) {
        say("testhost: cleanup callback returned -1");
    }
    say("collect bytes=%zu", size);
}

static void set_init_status(int status)
{
    pthread_mutex_lock(&init_mu);
    init_status = status;
    pthread_cond_signal(&init_cv);
    pthread_mutex_unlock(&init_mu);
}

static void ack(void)
{
    char c = 1;

    while (write(ack_pipe[1], &c, 1) < 0 && errno == EINTR) {
    }
}

/*
 * pause_input mirrors flb_input_pause (src/flb_input.c), which returns early
 * if the input is paused already, and flb_proxy_input_cb_pause
 * (src/flb_plugin_proxy.c): FLBPluginInputPause first, then
 * flb_input_collector_pause destroys the timer.
 */
static void pause_input(int *timer_fd)
{
    if (*timer_fd < 0) {
        return;
    }
    if (syms.pause) {
        syms.pause();
    }
    close(*timer_fd);
    *timer_fd = -1;
}

/*
 * input_thread mirrors input_thread() of src/flb_input_thread.c for a Go
 * input, which Fluent Bit always runs threaded (FLB_INPUT_THREADED is forced
 * in flb_proxy_register_input): init, collects, pause, resume and exit all
 * run on this one thread, one at a time, so a pause or an exit never
 * overlaps a collect.
 */
static void *input_thread(void *arg)
{
    struct pollfd pfd[2];
    int timer_fd; /* -1 while paused */
    uint64_t expirations;
    char cmd;
    int ret;

    (void) arg;

    /* flb_proxy_input_cb_init -> proxy_go_input_init: a return <= 0 fails. */
    ret = plugin.cb_init(&plugin);
    if (ret <= 0) {
        say("testhost: FLBPluginInit returned %d", ret);
        set_init_status(-1);
        return NULL;
    }
    /* Then flb_input_set_collector_time; its id (0, the first collector)
     * goes into coll_fd, already 0 here. */
    timer_fd = timer_start();
    if (timer_fd < 0) {
        say("testhost: collect timer: %s", strerror(errno));
        set_init_status(-1);
        return NULL;
    }
    /* Collectors started, then the pre_run callback (enable_hot_reload 0). */
    if (syms.pre_run) {
        syms.pre_run(0);
    }
    set_init_status(1);

    for (;;) {
        pfd[0].fd = cmd_pipe[0];
        pfd[0].events = POLLIN;
        pfd[1].fd = timer_fd; /* -1 while paused: poll ignores it */
        pfd[1].events = POLLIN;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            say("testhost: poll: %s", strerror(errno));
            _exit(EXIT_IO);
        }
        if (pfd[1].revents & POLLIN) {
            /* One read takes every expiration: a slow collect never queues
             * extra ones, as in flb_input_collector_fd. */
            if (read(timer_fd, &expirations, sizeof(expirations)) > 0) {
                collect();
            }
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP))) {
            continue;
        }
        if (read(cmd_pipe[0], &cmd, 1) != 1) {
            cmd = CMD_EXIT;
        }
        switch (cmd) {
        case CMD_PAUSE:
            pause_input(&timer_fd);
            break;
        case CMD_RESUME:
            /* flb_proxy_input_cb_resume: FLBPluginInputResume, then
             * flb_input_collector_resume creates a new timer. The engine
             * only resumes a paused input. */
            if (timer_fd < 0) {
                if (syms.resume) {
                    syms.resume();
                }
                timer_fd = timer_start();
                if (timer_fd < 0) {
                    say("testhost: collect timer: %s", strerror(errno));
                    _exit(EXIT_IO);
                }
            }
            break;
        case CMD_EXIT:
            /* Shutdown: flb_engine_stop_ingestion (src/flb_engine.c) pauses
             * every input first (FLBPluginInputPause, timer destroyed), then
             * flb_input_thread_instance_exit sends the exit event and this
             * thread runs flb_proxy_input_cb_exit: FLBPluginInputPreExit
             * (shutdown_by_hot_reloading 0), then FLBPluginExit
             * (proxy_go_input_destroy). Fluent Bit spends up to its grace
             * period between the pause and the exit; this host does not. */
            pause_input(&timer_fd);
            flush_pending();
            if (syms.pre_exit) {
                syms.pre_exit(0);
            }
            if (plugin.cb_exit) {
                plugin.cb_exit();
            }
            return NULL;
        }
        ack();
    }
}

/* ---- several instances (-i, -C) -----------------------------------------
 *
 * Everything for more than one [INPUT] of the plugin, and for a host older
 * than Fluent Bit 4.1, lives in the multi_ functions below; the single
 * instance path above is untouched by it.
 *
 * What Fluent Bit 5.1.1 does with several instances of one Go input, and
 * this host mirrors:
 *   - one flb_plugin_proxy per .so, so ONE struct flbgo_input_plugin
 *     (proxy->data) for all instances: proxy_go_input_init (src/proxy/go/
 *     go.c) sets its context and i_ins to the instance's just before
 *     FLBPluginInit, and flb_proxy_input_cb_init (src/flb_plugin_proxy.c)
 *     sets proxy->instance to it first;
 *   - each instance its own flb_plugin_input_proxy_context (flb_input_new,
 *     src/flb_input.c) and its own input thread, on which its init, collects,
 *     pause, resume and exit run (src/flb_input_thread.c); inits one after
 *     the other, and the collectors start only once every init succeeded
 *     (flb_input_thread_collectors_signal_wait); a failed init stops the
 *     start-up (flb_engine_start);
 *   - pause and resume of instance K call FLBPluginInputPause/Resume on K's
 *     thread, then stop/start the collect timer of proxy->instance, the LAST
 *     instance initialized (flb_proxy_input_cb_pause/_resume), so K's own
 *     timer keeps running unless K is the last;
 *   - shutdown pauses every input in order (flb_engine_stop_ingestion ->
 *     flb_input_pause_all), then exits them last first, each joined before
 *     the next (flb_input_exit_all).
 *
 * With -C the host is a Fluent Bit older than 4.1 (src/proxy/go/go.h before
 * commit 730e7b0ee): struct flbgo_input_plugin has no cb_collect_ctx and
 * cb_cleanup_ctx slots and the Ctx symbols are never resolved.
 *
 * Commands on stdin: "pause K", "resume K" (K from 1), "exit". Lines:
 *   instance K init ok | instance K init failed
 *   collect instance=K bytes=N      (after the bytes are in K's OUT)
 *   collect instance=K empty        (a collect that handed nothing over)
 *   ok pause K | ok resume K
 */

#define MULTI_MAX 8

/* struct flbgo_input_plugin before Fluent Bit 4.1. */
struct go_input_plugin_v40 {
    char *name;
    struct host_api *api;
    void *i_ins;
    struct input_proxy_context *context;

    int (*cb_init)(struct go_input_plugin_v40 *);
    int (*cb_collect)(void **, size_t *);
    int (*cb_cleanup)(void *);
    int (*cb_exit)(void);
};

/* Commands of the multi-instance threads, beside CMD_PAUSE/_RESUME/_EXIT. */
enum { CMD_TIMER_STOP = 's', CMD_TIMER_START = 't' };

struct multi_input {
    int index; /* 1-based, as commands and lines name it */
    const char *out_path;
    int out_fd;
    struct instance props;           /* its -p properties */
    struct input_proxy_context ctx;  /* its flb_plugin_input_proxy_context */
    pthread_t th;
    int cmd_pipe[2];                 /* main -> its thread */
    int ack_pipe[2];                 /* its thread -> main, one byte a command */
    int status;                      /* init: 0 pending, 1 ok, -1 failed; under multi_mu */
    int timer_fd;                    /* owned by its thread; -1 while stopped */
    int paused;                      /* by "pause K" (mem_buf_status); main thread only */
};

static struct multi_input multi[MULTI_MAX];
static int multi_n;
static int multi_old_host; /* -C */
static struct go_input_plugin_v40 plugin_v40;
static struct multi_input *proxy_instance; /* proxy->instance */
static pthread_mutex_t multi_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t multi_cv = PTHREAD_COND_INITIALIZER;
static int multi_collectors_go; /* set by main once every init is ok; under multi_mu */

/*
 * multi_add saves the -o and -p given so far as one more instance and
 * clears them for the next (-i, and once more at the end of the options).
 */
static int multi_add(const char *out_path)
{
    struct multi_input *m;

    if (multi_n == MULTI_MAX) {
        say("testhost: at most %d instances", MULTI_MAX);
        return -1;
    }
    if (out_path == NULL) {
        say("testhost: instance %d has no -o", multi_n + 1);
        return -1;
    }
    m = &multi[multi_n];
    m->index = multi_n + 1;
    m->out_path = out_path;
    m->props = ins;
    m->timer_fd = -1;
    memset(&ins, 0, sizeof(ins));
    multi_n++;
    return 0;
}

static void multi_ack(struct multi_input *m)
{
    char c = 1;

    while (write(m->ack_pipe[1], &c, 1) < 0 && errno == EINTR) {
    }
}

static void multi_set_status(struct multi_input *m, int status)
{
    pthread_mutex_lock(&multi_mu);
    m->status = status;
    pthread_cond_broadcast(&multi_cv);
    pthread_mutex_unlock(&multi_mu);
}

/* Like collect() above, for instance m and the host's kind. */
static void multi_collect(struct multi_input *m)
{
    void *data = NULL;
    size_t size = 0;
    int ret;

    if (!multi_old_host && plugin.cb_collect_ctx) {
        ret = plugin.cb_collect_ctx(m->ctx.remote_context, &data, &size);
    }
    else {
        ret = plugin.cb_collect(&data, &size);
    }
    if (size == 0) {
        if (data != NULL) {
            say("testhost: instance %d: collect returned size 0 with a buffer: it leaks", m->index);
        }
        say("collect instance=%d empty", m->index);
        return;
    }
    if (ret == -1) {
        say("testhost: instance %d: collect returned -1 with %zu bytes: dropped", m->index, size);
        return;
    }
    if (data == NULL) {
        say("testhost: instance %d: collect returned size %zu with a NULL buffer", m->index, size);
        _exit(EXIT_CONTRACT);
    }
    write_all(m->out_fd, data, size);
    if (cleanup_buffer(m->ctx.remote_context, !multi_old_host, data) == -1) {
        say("testhost: instance %d: cleanup callback returned -1", m->index);
    }
    say("collect instance=%d bytes=%zu", m->index, size);
}

/* The collect timer of m; on m's thread only. */
static void multi_timer_stop(struct multi_input *m)
{
    if (m->timer_fd >= 0) {
        close(m->timer_fd);
        m->timer_fd = -1;
    }
}

static void multi_timer_start(struct multi_input *m)
{
    if (m->timer_fd >= 0) {
        /* flb_input_collector_resume refuses a running collector. */
        say("testhost: instance %d: cannot resume collector, already running", m->index);
        return;
    }
    m->timer_fd = timer_start();
    if (m->timer_fd < 0) {
        say("testhost: collect timer: %s", strerror(errno));
        _exit(EXIT_IO);
    }
}

static int multi_init_plugin(struct multi_input *m)
{
    /* flb_proxy_input_cb_init, then proxy_go_input_init. */
    proxy_instance = m;
    if (multi_old_host) {
        plugin_v40.context = &m->ctx;
        plugin_v40.i_ins = &m->props;
        return plugin_v40.cb_init(&plugin_v40);
    }
    plugin.context = &m->ctx;
    plugin.i_ins = &m->props;
    return plugin.cb_init(&plugin);
}

/* input_thread() of src/flb_input_thread.c for instance m. */
static void *multi_thread(void *arg)
{
    struct multi_input *m = arg;
    struct pollfd pfd[2];
    uint64_t expirations;
    char cmd;
    int ret;

    ret = multi_init_plugin(m);
    if (ret <= 0) {
        say("testhost: instance %d: FLBPluginInit returned %d", m->index, ret);
        multi_set_status(m, -1);
        return NULL;
    }
    m->ctx.coll_fd = 0; /* flb_input_set_collector_time: its first collector */
    multi_set_status(m, 1);

    pthread_mutex_lock(&multi_mu);
    while (multi_collectors_go == 0) {
        pthread_cond_wait(&multi_cv, &multi_mu);
    }
    ret = multi_collectors_go;
    pthread_mutex_unlock(&multi_mu);
    if (ret < 0) {
        goto wait_exit; /* another init failed: no collector starts */
    }
    multi_timer_start(m);
    if (syms.pre_run) {
        syms.pre_run(0);
    }

wait_exit:
    for (;;) {
        pfd[0].fd = m->cmd_pipe[0];
        pfd[0].events = POLLIN;
        pfd[1].fd = m->timer_fd;
        pfd[1].events = POLLIN;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            say("testhost: poll: %s", strerror(errno));
            _exit(EXIT_IO);
        }
        if ((pfd[1].revents & POLLIN) &&
            read(m->timer_fd, &expirations, sizeof(expirations)) > 0) {
            multi_collect(m);
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP))) {
            continue;
        }
        if (read(m->cmd_pipe[0], &cmd, 1) != 1) {
            cmd = CMD_EXIT;
        }
        switch (cmd) {
        case CMD_PAUSE:
            if (syms.pause) {
                syms.pause();
            }
            break;
        case CMD_RESUME:
            if (syms.resume) {
                syms.resume();
            }
            break;
        case CMD_TIMER_STOP:
            multi_timer_stop(m);
            break;
        case CMD_TIMER_START:
            multi_timer_start(m);
            break;
        case CMD_EXIT:
            multi_timer_stop(m);
            if (syms.pre_exit) {
                syms.pre_exit(0);
            }
            if (plugin.cb_exit) {
                plugin.cb_exit();
            }
            return NULL;
        }
        multi_ack(m);
    }
}

/* Sends cmd to m's thread and waits until it is carried out. */
static void multi_command(struct multi_input *m, char cmd)
{
    char c;

    while (write(m->cmd_pipe[1], &cmd, 1) < 0 && errno == EINTR) {
    }
    while (read(m->ack_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
}

/* flb_proxy_input_cb_pause/_resume for instance m (see above). */
static void multi_pause(struct multi_input *m)
{
    m->paused = 1;
    multi_command(m, CMD_PAUSE);
    multi_command(proxy_instance, CMD_TIMER_STOP);
}

static void multi_resume(struct multi_input *m)
{
    m->paused = 0;
    multi_command(m, CMD_RESUME);
    multi_command(proxy_instance, CMD_TIMER_START);
}

/* Exits the instances whose init succeeded, last first, each joined. */
static void multi_exit_all(int started)
{
    int i;

    for (i = started - 1; i >= 0; i--) {
        while (write(multi[i].cmd_pipe[1], &(char){CMD_EXIT}, 1) < 0 && errno == EINTR) {
        }
        pthread_join(multi[i].th, NULL);
    }
}

/*
 * Reads commands from stdin, one a line, and hands each to run until run
 * says exit, stdin ends or a signal comes (sig_fd). Returns when the host
 * must shut down.
 */
static void command_loop(int sig_fd, int (*run)(const char *line))
{
    char buf[4096];
    size_t used = 0;
    struct pollfd pfd[2];
    ssize_t n;
    char *line, *nl;

    for (;;) {
        pfd[0].fd = STDIN_FILENO;
        pfd[0].events = POLLIN;
        pfd[1].fd = sig_fd;
        pfd[1].events = POLLIN;
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            say("testhost: poll: %s", strerror(errno));
            return;
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;

            if (read(sig_fd, &si, sizeof(si)) == sizeof(si)) {
                say("testhost: signal %u: exit", si.ssi_signo);
            }
            return;
        }
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        n = read(STDIN_FILENO, buf + used, sizeof(buf) - 1 - used);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            say("testhost: stdin closed: exit");
            return;
        }
        used += (size_t) n;
        buf[used] = '\0';
        line = buf;
        while ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            if (run(trim(line)) != 0) {
                return;
            }
            line = nl + 1;
        }
        used = strlen(line);
        memmove(buf, line, used);
        if (used == sizeof(buf) - 1) {
            say("testhost: command line too long");
            used = 0;
        }
    }
}

static struct multi_input *multi_by_index(const char *arg)
{
    int k = atoi(arg);

    if (k < 1 || k > multi_n) {
        return NULL;
    }
    return &multi[k - 1];
}

/*
 * The commands for several instances: pause K, resume K, exit. Returns 1
 * on exit.
 */
static int multi_command_line(const char *line)
{
    struct multi_input *m;

    if (strcmp(line, "exit") == 0) {
        return 1;
    }
    if (strncmp(line, "pause ", 6) == 0 && (m = multi_by_index(line + 6)) != NULL) {
        multi_pause(m);
        say("ok pause %d", m->index);
    }
    else if (strncmp(line, "resume ", 7) == 0 && (m = multi_by_index(line + 7)) != NULL) {
        multi_resume(m);
        say("ok resume %d", m->index);
    }
    else if (*line != '\0') {
        say("testhost: unknown command %s (want pause K, resume K or exit)", line);
    }
    return 0;
}

/*
 * multi_main runs every instance after register (main has loaded the
 * plugin, filled api and def, and taken the goroutine baseline). It returns
 * the process's exit code.
 */
static int multi_main(struct proxy_def *def, int sig_fd, int baseline)
{
    struct multi_input *m;
    int i, ret, started = 0, failed = 0;
    int at_return = -1, settled = -1;
    int64_t t0, took_ms, settle_ms = 0;

    if (multi_old_host) {
        plugin_v40.name = plugin.name;
        plugin_v40.api = &api;
        plugin_v40.cb_init = (int (*)(struct go_input_plugin_v40 *)) plugin.cb_init;
        plugin_v40.cb_collect = plugin.cb_collect;
        plugin_v40.cb_cleanup = plugin.cb_cleanup;
        plugin_v40.cb_exit = plugin.cb_exit;
        if (plugin.cb_collect == NULL) {
            say("testhost: the plugin exports no FLBPluginInputCallback");
            return EXIT_USAGE;
        }
    }
    for (i = 0; i < multi_n; i++) {
        m = &multi[i];
        m->ctx.proxy = def;
        m->out_fd = open(m->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (m->out_fd < 0) {
            say("testhost: open %s: %s", m->out_path, strerror(errno));
            return EXIT_IO;
        }
        if (pipe2(m->cmd_pipe, O_CLOEXEC) != 0 || pipe2(m->ack_pipe, O_CLOEXEC) != 0) {
            say("testhost: pipe: %s", strerror(errno));
            return EXIT_IO;
        }
    }

    /* flb_input_init_all: one instance after the other; stop at a failure. */
    for (i = 0; i < multi_n && !failed; i++) {
        m = &multi[i];
        ret = pthread_create(&m->th, NULL, multi_thread, m);
        if (ret != 0) {
            say("testhost: pthread_create: %s", strerror(ret));
            return EXIT_IO;
        }
        pthread_mutex_lock(&multi_mu);
        while (m->status == 0) {
            pthread_cond_wait(&multi_cv, &multi_mu);
        }
        ret = m->status;
        pthread_mutex_unlock(&multi_mu);
        if (ret < 0) {
            pthread_join(m->th, NULL);
            say("instance %d init failed", m->index);
            failed = 1;
            break;
        }
        say("instance %d init ok", m->index);
        started++;
    }

    pthread_mutex_lock(&multi_mu);
    multi_collectors_go = failed ? -1 : 1;
    pthread_cond_broadcast(&multi_cv);
    pthread_mutex_unlock(&multi_mu);

    if (failed) {
        /* flb_engine_start failed: Fluent Bit stops what it started. */
        multi_exit_all(started);
        say("init failed");
        return EXIT_INIT_FAILED;
    }
    say("init ok");

    command_loop(sig_fd, multi_command_line);

    t0 = now_ms();
    /* flb_input_pause skips an input paused already. */
    for (i = 0; i < multi_n; i++) {
        if (!multi[i].paused) {
            multi_pause(&multi[i]);
        }
    }
    multi_exit_all(started);
    took_ms = now_ms() - t0;
    if (syms.goroutines) {
        at_return = syms.goroutines();
        settled = goroutines_settled(baseline, &settle_ms);
    }
    say("exit took_ms=%lld goroutines=%d at_return=%d settle_ms=%lld",
        (long long) took_ms, settled, at_return, (long long) settle_ms);
    for (i = 0; i < multi_n; i++) {
        close(multi[i].out_fd);
    }
    return 0;
}

/* ---- main -------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: goproxy-testhost [-C] [-F FLUSH_MS] -o OUT.msgpack [-p key=value]... [-i -o OUT2 [-p key=value]...]... PLUGIN.so\n"
            "-i starts the next [INPUT] of the plugin; -C is a host without the Ctx\n"
            "callbacks (Fluent Bit before 4.1).\n"
            "A test host that drives a Fluent Bit Go input plugin as Fluent Bit's\n"
            "Go proxy does (it is not Fluent Bit). Commands on stdin: pause,\n"
            "resume, exit.\n");
    exit(EXIT_USAGE);
}

/* Sends a command to the input thread and waits until it is carried out. */
static void run_command(char cmd)
{
    char c;

    while (write(cmd_pipe[1], &cmd, 1) < 0 && errno == EINTR) {
    }
    while (read(ack_pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
}

/* The commands for one instance: pause, resume, exit. Returns 1 on exit. */
static int single_command_line(const char *line)
{
    if (strcmp(line, "exit") == 0) {
        return 1;
    }
    if (strcmp(line, "pause") == 0) {
        run_command(CMD_PAUSE);
        say("ok pause");
    }
    else if (strcmp(line, "resume") == 0) {
        run_command(CMD_RESUME);
        say("ok resume");
    }
    else if (*line != '\0') {
        say("testhost: unknown command %s (want pause, resume or exit)", line);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *out_path = NULL;
    const char *so_path;
    struct proxy_def *def;
    pthread_t th;
    sigset_t sigs;
    void *dso;
    int sig_fd;
    int opt;
    int ret;
    int64_t t0, took_ms;
    int baseline = -1, at_return = -1, settled = -1;
    int64_t settle_ms = 0;

    while ((opt = getopt(argc, argv, "o:p:iCF:h")) != -1) {
        switch (opt) {
        case 'o':
            out_path = optarg;
            break;
        case 'F':
            flush_ms = atoi(optarg);
            if (flush_ms <= 0) {
                usage();
            }
            break;
        case 'i': /* several instances: see multi_main */
            if (multi_add(out_path) != 0) {
                return EXIT_USAGE;
            }
            out_path = NULL;
            break;
        case 'C':
            multi_old_host = 1;
            break;
        case 'p':
            if (add_property(optarg) != 0) {
                say("testhost: bad property %s: want key=value", optarg);
                return EXIT_USAGE;
            }
            break;
        default:
            usage();
        }
    }
    if ((multi_n > 0 || multi_old_host) && multi_add(out_path) != 0) {
        return EXIT_USAGE;
    }
    if ((multi_n == 0 && out_path == NULL) || optind != argc - 1) {
        usage();
    }
    so_path = argv[optind];

    if (multi_n == 0) {
        out_fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (out_fd < 0) {
            say("testhost: open %s: %s", out_path, strerror(errno));
            return EXIT_IO;
        }
    }

    /*
     * SIGTERM and SIGINT are taken through a signalfd on this thread. They
     * are blocked before dlopen so that the Go runtime, which keeps the mask
     * it finds at load time for its own threads, does not get them either.
     */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sig_fd < 0) {
        say("testhost: signalfd: %s", strerror(errno));
        return EXIT_IO;
    }
    signal(SIGPIPE, SIG_IGN);

    /* flb_plugin_proxy_create (src/flb_plugin_proxy.c) uses RTLD_LAZY;
     * RTLD_NOW reports an unresolved symbol at load instead of at first call. */
    dso = dlopen(so_path, RTLD_NOW | RTLD_LOCAL);
    if (dso == NULL) {
        say("testhost: dlopen %s: %s", so_path, dlerror());
        return EXIT_USAGE;
    }
    resolve(dso);
    if (syms.do_register == NULL || plugin.cb_init == NULL) {
        say("testhost: %s exports no FLBPluginRegister or FLBPluginInit", so_path);
        return EXIT_USAGE;
    }
    if (plugin.cb_collect == NULL && plugin.cb_collect_ctx == NULL) {
        say("testhost: %s exports no FLBPluginInputCallback", so_path);
        return EXIT_USAGE;
    }

    /* flb_plugin_proxy_register: FLBPluginPreRegister(hot_reloading 0), then
     * FLBPluginRegister with a zeroed definition; -1 fails. */
    if (syms.pre_register && syms.pre_register(0) == -1) {
        say("testhost: FLBPluginPreRegister returned -1");
        return EXIT_USAGE;
    }
    def = calloc(1, sizeof(*def));
    if (def == NULL) {
        return EXIT_IO;
    }
    def->type = PROXY_INPUT_PLUGIN; /* flb_plugin_proxy_create presets it */
    if (syms.do_register(def) == -1) {
        say("testhost: FLBPluginRegister returned -1");
        return EXIT_USAGE;
    }
    if (def->type != PROXY_INPUT_PLUGIN || def->proxy != PROXY_GOLANG || def->name == NULL) {
        say("testhost: registered type=%d proxy=%d name=%s: want a Go input "
            "(type %d, proxy %d) with a name", def->type, def->proxy,
            def->name ? def->name : "(null)", PROXY_INPUT_PLUGIN, PROXY_GOLANG);
        return EXIT_USAGE;
    }
    say("registered name=%s type=%d proxy=%d flags=%d event_type=%d",
        def->name, def->type, def->proxy, def->flags, def->event_type);
    if (syms.goroutines) {
        baseline = goroutine_baseline();
        say("goroutines baseline=%d", baseline);
    }

    /* proxy_go_input_register + proxy_go_input_init (src/proxy/go/go.c). */
    api.output_get_property = no_property;
    api.input_get_property = input_get_property;
    api.output_get_cmt_instance = no_cmt;
    api.input_get_cmt_instance = no_cmt;
    api.log_print = log_print;
    api.input_log_check = log_check;
    api.output_log_check = log_check;
    api.custom_get_property = no_property;
    api.custom_log_check = log_check;
    plugin.name = strdup(def->name);
    plugin.api = &api;
    plugin.i_ins = &ins;
    proxy_ctx.proxy = def;
    plugin.context = &proxy_ctx;

    if (multi_n > 0) {
        ret = multi_main(def, sig_fd, baseline);
        if (ret == 0) {
            if (syms.unregister) {
                syms.unregister(def);
            }
            dlclose(dso);
            say("ok exit");
        }
        return ret;
    }

    if (pipe2(cmd_pipe, O_CLOEXEC) != 0 || pipe2(ack_pipe, O_CLOEXEC) != 0) {
        say("testhost: pipe: %s", strerror(errno));
        return EXIT_IO;
    }
    if (storage_memory) {
        pthread_t out_th;

        ret = pthread_create(&out_th, NULL, output_thread, NULL);
        if (ret != 0) {
            say("testhost: pthread_create: %s", strerror(ret));
            return EXIT_IO;
        }
        pthread_detach(out_th); /* it ends with the process */
    }
    ret = pthread_create(&th, NULL, input_thread, NULL);
    if (ret != 0) {
        say("testhost: pthread_create: %s", strerror(ret));
        return EXIT_IO;
    }

    /* flb_input_thread_instance_init waits for the thread's init status.
     * After a failed init Fluent Bit calls no exit callback. */
    pthread_mutex_lock(&init_mu);
    while (init_status == 0) {
        pthread_cond_wait(&init_cv, &init_mu);
    }
    ret = init_status;
    pthread_mutex_unlock(&init_mu);
    if (ret < 0) {
        pthread_join(th, NULL);
        say("init failed");
        return EXIT_INIT_FAILED;
    }
    say("init ok");

    command_loop(sig_fd, single_command_line);

    /* The input thread ends after FLBPluginExit and sends no ack: join it. */
    t0 = now_ms();
    while (write(cmd_pipe[1], &(char){CMD_EXIT}, 1) < 0 && errno == EINTR) {
    }
    pthread_join(th, NULL);
    took_ms = now_ms() - t0;
    if (syms.goroutines) {
        at_return = syms.goroutines();
        settled = goroutines_settled(baseline, &settle_ms);
    }
    say("exit took_ms=%lld goroutines=%d at_return=%d settle_ms=%lld",
        (long long) took_ms, settled, at_return, (long long) settle_ms);

    /* flb_proxy_input_cb_destroy: FLBPluginUnregister, then dlclose. */
    if (syms.unregister) {
        syms.unregister(def);
    }
    close(out_fd);
    dlclose(dso);
    say("ok exit");
    return 0;
}
