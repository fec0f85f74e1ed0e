// Command docker_logs is the Fluent Bit input plugin, built with
// -buildmode=c-shared. The exports only translate between C and Go; the
// registry of package instance says how each reaches its instance.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include "hostabi.h"
*/
import "C"

import (
	"runtime"
	"unsafe"

	"github.com/fluent/fluent-bit-go/input"

	"github.com/dockerlogs/fluent-bit-docker-logs/instance"
)

// instances holds every docker_logs input of this process.
var instances = instance.NewRegistry(instance.NewLogger)

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) int {
	return input.FLBPluginRegister(def, instance.PluginName, "Logs of every Docker container on the host")
}

// FLBPluginInit sets the instance's remote_context itself: fluent-bit-go
// has no setter for inputs, and its header's context struct is not Fluent
// Bit's (hostabi.h).
//
//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) int {
	h := instance.Host{CallsCtx: C.dl_host_calls_ctx(plugin) != 0, Thread: uint64(C.dl_thread())}
	id, err := instances.Init(h, func(key string) string { return input.FLBPluginConfigKey(plugin, key) })
	if err != nil {
		return input.FLB_ERROR
	}
	if h.CallsCtx {
		C.dl_set_remote_context(plugin, C.uintptr_t(id))
	}
	return input.FLB_OK
}

// The remote_context is an integer id, taken as uintptr_t so that Go never
// sees it as a pointer; the C ABI passes void * and uintptr_t alike.
//
//export FLBPluginInputCallbackCtx
func FLBPluginInputCallbackCtx(ctx C.uintptr_t, data *unsafe.Pointer, size *C.size_t) int {
	*data, *size = collect(instances.ByContext(instance.ID(ctx)))
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallbackCtx
func FLBPluginInputCleanupCallbackCtx(ctx C.uintptr_t, data unsafe.Pointer) int {
	cleanup(instances.ByContext(instance.ID(ctx)), data)
	return input.FLB_OK
}

// The callbacks without context serve a Fluent Bit older than 4.1, which
// runs one instance only.
//
//export FLBPluginInputCallback
func FLBPluginInputCallback(data *unsafe.Pointer, size *C.size_t) int {
	*data, *size = collect(instances.Only())
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallback
func FLBPluginInputCleanupCallback(data unsafe.Pointer) int {
	cleanup(instances.Only(), data)
	return input.FLB_OK
}

//export FLBPluginInputPause
func FLBPluginInputPause() { instances.Pause(uint64(C.dl_thread())) }

//export FLBPluginInputResume
func FLBPluginInputResume() { instances.Resume(uint64(C.dl_thread())) }

//export FLBPluginExit
func FLBPluginExit() int {
	instances.Exit(uint64(C.dl_thread()))
	return input.FLB_OK
}

func collect(p *instance.Instance) (unsafe.Pointer, C.size_t) {
	if p == nil {
		return nil, 0
	}
	ptr, n := p.Collect(cHeap{})
	return ptr, C.size_t(n)
}

// cleanup frees the buffer when its instance is gone: Fluent Bit frees
// nothing itself once the plugin exports a cleanup callback.
func cleanup(p *instance.Instance, data unsafe.Pointer) {
	if p == nil {
		C.free(data)
		return
	}
	p.Cleanup(data)
}

// cHeap is the C heap of the buffers handed to Fluent Bit.
type cHeap struct{}

func (cHeap) Alloc(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) }
func (cHeap) Free(p unsafe.Pointer)      { C.free(p) }

// DockerLogsGoroutines reports the Go runtime's goroutine count, so a test
// host can check that exit left none of the plugin's behind.
//
//export DockerLogsGoroutines
func DockerLogsGoroutines() int { return runtime.NumGoroutine() }

func main() {}
