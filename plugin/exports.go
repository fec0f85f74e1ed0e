// Command docker_logs is the Fluent Bit input plugin, built with
// -buildmode=c-shared. The exports only translate between C and Go.
package main

/*
#include <stdlib.h>
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

//export FLBPluginInit
func FLBPluginInit(ins unsafe.Pointer) int {
	if err := plugin.init(func(key string) string { return input.FLBPluginConfigKey(ins, key) }); err != nil {
		return input.FLB_ERROR
	}
	return input.FLB_OK
}

//export FLBPluginInputCallback
func FLBPluginInputCallback(data *unsafe.Pointer, size *C.size_t) int {
	ptr, n := plugin.collect(func(n int) unsafe.Pointer { return C.malloc(C.size_t(n)) })
	*data, *size = ptr, C.size_t(n)
	return input.FLB_OK
}

//export FLBPluginInputCleanupCallback
func FLBPluginInputCleanupCallback(data unsafe.Pointer) int {
	plugin.cleanup(data, func(p unsafe.Pointer) { C.free(p) })
	return input.FLB_OK
}

//export FLBPluginInputPause
func FLBPluginInputPause() { plugin.pause() }

//export FLBPluginInputResume
func FLBPluginInputResume() { plugin.resume() }

//export FLBPluginExit
func FLBPluginExit() int {
	plugin.exit()
	return input.FLB_OK
}

// DockerLogsGoroutines reports the Go runtime's goroutine count, so a test
// host can check that exit left none of the plugin's behind.
//
//export DockerLogsGoroutines
func DockerLogsGoroutines() int { return goroutines() }

func main() {}
