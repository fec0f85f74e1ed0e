package instance

import (
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

// A failed init logs its reasons under logrus' error key, as every other
// log line with an error does.
func TestInitFailureLogsReasonsUnderErrorKey(t *testing.T) {
	logger, hook := test.NewNullLogger()
	r := NewRegistry(func(ID) *logrus.Entry { return logrus.NewEntry(logger) })
	_, err := r.Init(Host{CallsCtx: true}, func(key string) string {
		if key == "Stream_Refresh" {
			return "banana"
		}
		return ""
	})
	if err == nil {
		t.Fatal("init accepted stream_refresh banana")
	}
	e := hook.LastEntry()
	if e == nil || e.Level != logrus.ErrorLevel {
		t.Fatalf("init logged %v, want an error line", e)
	}
	if got, _ := e.Data[logrus.ErrorKey].(string); !strings.Contains(got, "stream_refresh") {
		t.Errorf("field %q = %v, want the reason naming stream_refresh; fields %v", logrus.ErrorKey, got, e.Data)
	}
}
