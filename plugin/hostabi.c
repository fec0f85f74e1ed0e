#include <pthread.h>
#include <stddef.h>

#include "_cgo_export.h"
#include "hostabi.h"

int dl_host_calls_ctx(void *plugin)
{
    struct dl_go_input_plugin *p = plugin;

    return p != NULL && p->cb_collect_ctx == (void *) FLBPluginInputCallbackCtx;
}

void dl_set_remote_context(void *plugin, uintptr_t id)
{
    struct dl_go_input_plugin *p = plugin;

    if (p != NULL && p->context != NULL) {
        p->context->remote_context = (void *) id;
    }
}

uint64_t dl_thread(void)
{
    return (uint64_t) pthread_self();
}
