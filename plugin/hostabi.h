/*
 * The parts of Fluent Bit's Go proxy ABI that fluent-bit-go does not
 * declare, or declares wrongly, for inputs. Checked against Fluent Bit
 * 5.1.1's source:
 *
 *   include/fluent-bit/flb_plugin_proxy.h
 *       struct flb_plugin_input_proxy_context {int coll_fd;
 *           void *remote_context; struct flb_plugin_proxy *proxy;}
 *       (unchanged since Fluent Bit 2.0, commit a74afc960). fluent-bit-go's
 *       input/flb_input.h declares it as {void *remote_context}, which would
 *       write over coll_fd.
 *   src/proxy/go/go.h
 *       struct flbgo_input_plugin {char *name; void *api; void *i_ins;
 *           struct flb_plugin_input_proxy_context *context;
 *           cb_init; cb_collect; cb_collect_ctx; cb_cleanup; cb_cleanup_ctx;
 *           cb_exit;}
 *       cb_collect_ctx and cb_cleanup_ctx came with Fluent Bit 4.1 (commit
 *       730e7b0ee); before, the struct was {name; api; i_ins; context;
 *       cb_init; cb_collect; cb_cleanup; cb_exit;}.
 *   src/proxy/go/go.c
 *       proxy_go_input_register fills cb_collect_ctx with
 *       dlsym("FLBPluginInputCallbackCtx"); proxy_go_input_init sets
 *       context = the instance's flb_plugin_input_proxy_context and i_ins
 *       just before FLBPluginInit; proxy_go_input_collect/_cleanup pass
 *       context->remote_context to the Ctx callbacks when they exist.
 */
#ifndef DOCKER_LOGS_HOSTABI_H
#define DOCKER_LOGS_HOSTABI_H

#include <stdint.h>

struct dl_input_proxy_context {
    int coll_fd;
    void *remote_context;
    void *proxy;
};

/* Fluent Bit 4.1 and newer. */
struct dl_go_input_plugin {
    char *name;
    void *api;
    void *i_ins;
    struct dl_input_proxy_context *context;

    void *cb_init;
    void *cb_collect;
    void *cb_collect_ctx;
    void *cb_cleanup;
    void *cb_cleanup_ctx;
    void *cb_exit;
};

/*
 * dl_host_calls_ctx reports whether the host will call
 * FLBPluginInputCallbackCtx for this instance: its cb_collect_ctx slot holds
 * that very function. A host older than 4.1 has cb_cleanup in the same
 * slot (the 7th pointer of a struct of 8), so reading it stays inside the
 * older struct and holds FLBPluginInputCleanupCallback there.
 */
int dl_host_calls_ctx(void *plugin);

/* dl_set_remote_context stores the instance's id for the Ctx callbacks. */
void dl_set_remote_context(void *plugin, uintptr_t id);

/* dl_thread returns the calling thread's pthread_self(). */
uint64_t dl_thread(void);

#endif
