package capture

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors a Source classifies its failures into, so capture decides what to do
// with errors.Is and never by an error's text.
var (
	// ErrNotFound: the container does not exist (any more).
	ErrNotFound = errors.New("container not found")
	// ErrLogsUnreadable: the daemon cannot serve this container's logs
	// (HTTP 501, e.g. log driver "none").
	ErrLogsUnreadable = errors.New("container logs cannot be read")
	// ErrIncompatible: the daemon and this client have no API version in
	// common (the daemon is older than API 1.40, or its minimum is above
	// the newest the client speaks). Retrying cannot help.
	ErrIncompatible = errors.New("docker daemon API version not supported")
)

// Container is what capture needs to know about one container.
type Container struct {
	ID     string            // all 64 hex digits
	Name   string            // without the leading "/"
	Image  string            // as created, e.g. "nginx:1.27"
	Labels map[string]string // may be nil
	TTY    bool              // Config.Tty: the logs stream is raw, not multiplexed
	// Running: its process exists, so a follow stream stays open; true
	// for a paused container too.
	Running bool
	// NoLogs: its log driver keeps nothing the daemon can serve ("none").
	// Docker answers its logs with 501, Podman with a server error that
	// looks like a failing daemon, so inspect decides.
	NoLogs bool
	// LogDriver is its log driver ("json-file", "local", ...) as inspect
	// tells it; empty when unknown (a list tells none).
	LogDriver string
	// Created is when the container was created, to the second (List
	// gives no more); zero when unknown.
	Created time.Time
}

// LogsRequest is one GET /containers/{id}/logs with timestamps=1.
type LogsRequest struct {
	Stdout, Stderr bool
	Follow         bool
	// Since is inclusive; zero means no since filter.
	Since Timestamp
	// Tail is the number of entries from the end; negative means all.
	Tail int
}

// EventAction is a container event's action that capture reacts to.
type EventAction string

const (
	ActionStart EventAction = "start"
	// ActionDie: the container stopped. capture/jsonfile ends a followed
	// file on it, as the API ends a follow stream.
	ActionDie     EventAction = "die"
	ActionDestroy EventAction = "destroy"
	ActionRename  EventAction = "rename"
	// A paused container keeps its follow stream open and quiet; unpause
	// starts a reader if none runs.
	ActionPause   EventAction = "pause"
	ActionUnpause EventAction = "unpause"
)

// Event is one container event.
type Event struct {
	Action EventAction
	ID     string
	Name   string // new name, without the leading "/"
	Image  string // as the container was created with it
	// Labels are the container's labels as the event carries them among
	// its attributes (start events; nil when it carries none): a
	// container gone before its inspect is filtered with them.
	Labels map[string]string
	// Time is the daemon's, as the log's stamps: a rename's tells the old
	// name's lines from the new one's. Zero when unknown.
	Time time.Time
}

// Source is the Docker daemon as capture sees it. The docker package
// implements it with the Engine SDK; tests implement it with fakes.
type Source interface {
	// List returns the containers, running or not (all=true).
	List(ctx context.Context) ([]Container, error)
	// Inspect returns one container; ErrNotFound when it is gone.
	Inspect(ctx context.Context, id string) (Container, error)
	// Logs opens a logs stream. Cancelling ctx or closing the stream ends a
	// Read blocked on it.
	Logs(ctx context.Context, id string, req LogsRequest) (io.ReadCloser, error)
	// Events subscribes to start, destroy, rename, pause and unpause events
	// of containers (a reader sees its container stop when its stream ends). When the subscription ends, the error that ended it (nil
	// when ctx was cancelled) is sent once on the error channel, which is
	// buffered, and then the Source's goroutine closes the events channel
	// as the last thing it does, so a closed channel means it has ended.
	Events(ctx context.Context) (<-chan Event, <-chan error)
	// Close releases idle connections.
	Close() error
}
