// Command docker_logs is the Fluent Bit input plugin, built with
// -buildmode=c-shared. The exports only translate between C and Go; the
// registry (registry.go) says how each reaches its instance.
package main

/*
#include <stdint.h>
#include <stdlib.h>
#include "hostabi.h"
*/
import "C"

import (
	"unsafe"

	"github.com/fluent/fluent-bit-go/input"
)

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) int {
	return input.FLBPluginRegister(def, pluginName, "Logs of every Docker container on the host")
}

// FLBPluginInit sets the instance's remote_context itself: fluent-bit-go
// has no setter for inputs, and its header's context struct is not Fluent
// Bit's (hostabi.h).
//
//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) int {
	h := host{callsCtx: C.dl_host_calls_ctx(plugin) != 0, thread: uint64(C.dl_thread())}
	id, err := instances.init(h, func(key string) string { return input.FLBPluginConfigKey(plugin, key) })
	if err != nil {
		return input.FLB_ERROR
	}
	if h.callsCtx {
		C.dl_set_remote_context(plugin, C.uintptr_t(id))
	}
	return input.FLB_OK
}

// The remote_context is an integer id, taken as uintptr_t so that Go never
// sees it as a pointer; the C ABI passes void * and uintptr_t alike.
//
//export FLBPluginInputCallbackCtx
func FLBPluginInputCallbackCtx(ctx C.uintptr_t, data *unsafe.Pointer, size *C.size_t) int {
	*data, *size = collect(instances.byContext(instanceID(ctx)))
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallbackCtx
func FLBPluginInputCleanupCallbackCtx(ctx C.uintptr_t, data unsafe.Pointer) int {
	cleanup(instances.byContext(instanceID(ctx)), data)
	return input.FLB_OK
}

// The callbacks without context serve a Fluent Bit older than 4.1, which
// runs one instance only.
//
//export FLBPluginInputCallback
func FLBPluginInputCallback(data *unsafe.Pointer, size *C.size_t) int {
	*data, *size = collect(instances.only())
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallback
func FLBPluginInputCleanupCallback(data unsafe.Pointer) int {
	cleanup(instances.only(), data)
	return input.FLB_OK
}

//export FLBPluginInputPause
func FLBPluginInputPause() { instances.pause(uint64(C.dl_thread())) }

//export FLBPluginInputResume
func FLBPluginInputResume() { instances.resume(uint64(C.dl_thread())) }

//export FLBPluginExit
func FLBPluginExit() int {
	instances.exit(uint64(C.dl_thread()))
	return input.FLB_OK
}

func collect(p *instance) (unsafe.Pointer, C.size_t) {
	if p == nil {
		return nil, 0
	}
	ptr, n := p.collect(func(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) })
	return ptr, C.size_t(n)
}

// cleanup frees the buffer even when its instance is gone: Fluent Bit
// frees nothing itself once the plugin exports a cleanup callback.
func cleanup(p *instance, data unsafe.Pointer) {
	if p == nil {
		C.free(data)
		return
	}
	p.cleanup(data, func(ptr unsafe.Pointer) { C.free(ptr) })
}

// DockerLogsGoroutines reports the Go runtime's goroutine count, so a test
// host can check that exit left none of the plugin's behind.
//
//export DockerLogsGoroutines
func DockerLogsGoroutines() int { return goroutines() }

func main() {}
