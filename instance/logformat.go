package instance

import (
	"bytes"
	"fmt"
	"sort"

	"github.com/sirupsen/logrus"
)

// fluentFormatter writes lines that read like Fluent Bit's own:
// [2006/01/02 15:04:05] [ info] [input:docker_logs] message key=value
type fluentFormatter struct{ name string }

func (f fluentFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b := e.Buffer
	if b == nil {
		b = &bytes.Buffer{}
	}
	fmt.Fprintf(b, "[%s] [%5s] [input:%s] %s", e.Time.Format("2006/01/02 15:04:05"), levelName(e.Level), f.name, e.Message)
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := e.Data[k]
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		fmt.Fprintf(b, " %s=%v", k, quoteIfNeeded(fmt.Sprint(v)))
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func levelName(l logrus.Level) string {
	switch l {
	case logrus.WarnLevel:
		return "warn"
	case logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel:
		return "error"
	}
	return l.String()
}

func quoteIfNeeded(s string) string {
	for _, r := range s {
		if r == ' ' || r == '"' || r == '=' || r < 0x20 {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
