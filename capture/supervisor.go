package capture

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// supervisor discovers containers and owns one reader per running one. It
// is the only goroutine that touches the containers map.
type supervisor struct {
	src   Source
	opts  *Options
	q     *queue
	log   *logrus.Entry
	store *store
	stats *Stats

	// startedAt is when capture started: a stopped container created since
	// then that a reconnection finds unknown started and exited unseen.
	startedAt time.Time

	containers map[string]*containerState
	// stoppedQueue holds stopped containers waiting for one of the
	// maxStoppedReads slots; stoppedReads counts the slots taken (by
	// readers with holdsSlot). Both are the supervisor's.
	stoppedQueue []*containerState
	stoppedReads int
	// exited carries a container whose reader returned; readers send, the
	// supervisor receives; nobody closes it.
	exited chan *containerState
	// readers counts running readers: Add by the supervisor before each go
	// statement, Done by the reader's goroutine, Wait by the supervisor
	// when it stops.
	readers sync.WaitGroup
}

func (s *supervisor) run(ctx context.Context) {
	defer s.readers.Wait() // ctx is done: every reader is returning
	backoff := minReconnect
	startup := true
	for ctx.Err() == nil {
		// Subscribe first, then list, so nothing starts unseen in between.
		evCtx, evCancel := context.WithCancel(ctx)
		events, errs := s.src.Events(evCtx)
		list, err := s.src.List(ctx)
		if err != nil {
			stopEvents(evCancel, events)
			if ctx.Err() != nil {
				return
			}
			s.stats.countError(ReasonList)
			if errors.Is(err, ErrIncompatible) {
				// Asking again gets the same answer: say so once and
				// stay idle until stopped.
				s.log.WithError(err).Error("cannot use this docker daemon; not retrying: use a daemon of API 1.40 or newer that accepts this plugin's API version, then restart Fluent Bit")
				s.idle(ctx)
				return
			}
			s.log.WithError(err).WithField("retry_in", backoff.String()).Warn("cannot list containers")
			s.wait(ctx, backoff)
			backoff = min(2*backoff, maxReconnect)
			continue
		}
		s.reconcile(ctx, list, startup)
		if !startup {
			s.stats.add(countReconnects, 1)
			s.log.WithField("containers", len(list)).Info("reconnected to the docker daemon")
		}
		startup, backoff = false, minReconnect
		err = s.follow(ctx, events, errs)
		stopEvents(evCancel, events)
		if ctx.Err() != nil {
			return
		}
		s.stats.countError(ReasonEvents)
		s.log.WithError(err).WithField("retry_in", backoff.String()).Warn("events stream ended, reconnecting")
		s.wait(ctx, backoff)
		backoff = min(2*backoff, maxReconnect)
	}
}

// stopEvents cancels an events subscription and waits until the Source's
// goroutine has ended, which closes the channel last.
func stopEvents(cancel context.CancelFunc, events <-chan Event) {
	cancel()
	for range events {
	}
}

// follow handles events until the events stream ends.
func (s *supervisor) follow(ctx context.Context, events <-chan Event, errs <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				select {
				case err := <-errs:
					return err
				case <-ctx.Done():
					return nil
				}
			}
			s.handle(ctx, ev)
		case cs := <-s.exited:
			s.onExit(ctx, cs)
		}
	}
}

// idle takes readers' exits until ctx is done.
func (s *supervisor) idle(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case cs := <-s.exited:
			s.onExit(ctx, cs)
		}
	}
}

// wait sleeps d while still taking readers' exits.
func (s *supervisor) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case cs := <-s.exited:
			s.onExit(ctx, cs)
		}
	}
}

// reconcile brings the readers in line with a fresh list: the events of a
// daemon that restarted are gone, so a container may have died, started or
// been removed unseen.
func (s *supervisor) reconcile(ctx context.Context, list []Container, startup bool) {
	present := make(map[string]bool, len(list))
	// With DB, the watch continues across a restart of Fluent Bit: a
	// container without a position (quiet so far, only an unselected
	// stream, or started while Fluent Bit was down) is read from the
	// watch's start, not from now.
	watch, restart := s.store.resumedWatch()
	restart = restart && startup
	fromWatch := restart && !s.opts.ReadFromHead // else from the head
	for _, c := range list {
		present[c.ID] = true
		cs := s.containers[c.ID]
		if cs == nil && startup {
			if pos, ok := s.store.get(c.ID); ok {
				// Read before a restart of Fluent Bit: continue after the
				// last line delivered, and read the rest of a container
				// that stopped meanwhile once, without follow.
				cs = newContainerState(c.ID, false)
				cs.pos = pos
				s.containers[c.ID] = cs
				if c.Running {
					s.start(ctx, cs)
				} else {
					s.stoppedQueue = append(s.stoppedQueue, cs)
				}
				continue
			}
		}
		// After a reconnection, a stopped container may have run while the
		// events were lost: one created since capture started and never
		// seen, or a known one that ran again. Its reader reads what is new
		// once, without follow.
		// So may a stopped one created while Fluent Bit was down.
		unseenRun := !startup && !c.Running &&
			(cs != nil || !c.Created.Before(s.startedAt.Truncate(time.Second)))
		unseenRun = unseenRun || (restart && !c.Running && !c.Created.Before(watch.Time().Truncate(time.Second)))
		// Read from the head, as tail's users expect, covers the logs of
		// every container on the host: a stopped one is read once,
		// without follow (and with DB, not again: it has a position).
		stoppedFromHead := startup && !c.Running && s.opts.ReadFromHead
		if cs == nil {
			if !c.Running && !unseenRun && !stoppedFromHead {
				continue
			}
			// Already running at start-up: read from now on unless asked
			// for the head, or from the watch's start. Found later: it
			// started unseen, read it all.
			cs = newContainerState(c.ID, startup && !s.opts.ReadFromHead && !restart)
			if fromWatch {
				cs.since = watch
			}
			cs.listedStopped = stoppedFromHead
			s.containers[c.ID] = cs
		}
		switch {
		case c.Running || unseenRun:
			s.start(ctx, cs)
		case stoppedFromHead:
			s.stoppedQueue = append(s.stoppedQueue, cs)
		}
	}
	for id, cs := range s.containers {
		if !present[id] {
			s.remove(cs)
		}
	}
	s.startStopped(ctx)
	for _, id := range s.store.ids() {
		if !present[id] {
			s.store.forget(id, nil) // destroyed unseen (Fluent Bit or the events were down): its logs are gone with it
		}
	}
}

func (s *supervisor) handle(ctx context.Context, ev Event) {
	cs := s.containers[ev.ID]
	switch ev.Action {
	case ActionStart:
		if cs == nil {
			cs = newContainerState(ev.ID, false)
			s.containers[ev.ID] = cs
		}
		cs.starts++
		if cs.cancel == nil {
			// Its reader's only details if it is gone before its inspect.
			cs.eventName, cs.eventImage, cs.eventLabels = ev.Name, ev.Image, ev.Labels
		}
		s.releaseSlot(ctx, cs) // it runs now: its reader follows it
		s.start(ctx, cs)
	case ActionDestroy:
		if cs != nil {
			s.remove(cs)
		}
	case ActionRename:
		if cs != nil {
			s.rename(ctx, cs, ev)
		}
	case ActionUnpause:
		// A paused container is read like a running one (its follow stream
		// stays open and quiet), so a reader normally runs already. One
		// not known, or not taken for running when listed, starts now.
		if cs == nil {
			cs = newContainerState(ev.ID, false)
			s.containers[ev.ID] = cs
		}
		s.start(ctx, cs)
	case ActionPause:
		// Its follow stream stays open and quiet; the reader keeps it.
	}
}

// rename decides the filter again under the container's new name. Lines
// are taken by the name the container had when they were written: renamed
// out, its lines from the rename on are not delivered (those before are);
// renamed in, it is read from the rename on.
func (s *supervisor) rename(ctx context.Context, cs *containerState, ev Event) {
	at := Timestamp(time.Now().UnixNano())
	if !ev.Time.IsZero() {
		at = Timestamp(ev.Time.UnixNano()) // the daemon's clock, as the log's stamps
	}
	cs.renames.Add(1) // before the decision: an inspect under way asks again
	m := cs.meta.Load()
	var c Container
	if m != nil {
		c = m.info
		c.Name = ev.Name
		cs.setMeta(c)
	}
	if cs.cancel != nil {
		// A reader runs and owns excluded; it is decided again when it
		// returns. A reader that reads tells the old name's lines from the
		// new one's by until. (Without details it is still inspecting,
		// and renames makes it ask again.)
		cs.renamed, cs.renamedAt = true, at
		if m != nil {
			if s.selects(c) {
				cs.until.Store(0)
			} else if cs.until.Load() == 0 {
				cs.until.Store(int64(at))
			}
		}
		return
	}
	if !cs.excluded {
		return // a stopped container: its next reader inspects the new name
	}
	// Not selected before: from the rename on, if the filter takes it now
	// (its reader decides with the new name).
	cs.readFrom(at)
	s.start(ctx, cs)
}

// readFrom makes the next reader read from stamp at, the rename that took
// the container into the filter; the supervisor calls it when no reader
// runs.
func (cs *containerState) readFrom(at Timestamp) {
	cs.excluded, cs.fromNow = false, false
	cs.pos, cs.since = position{}, at
}

// startStopped starts readers of queued stopped containers while slots
// are free.
func (s *supervisor) startStopped(ctx context.Context) {
	for s.stoppedReads < maxStoppedReads && len(s.stoppedQueue) > 0 {
		cs := s.stoppedQueue[0]
		s.stoppedQueue[0] = nil
		s.stoppedQueue = s.stoppedQueue[1:]
		if cs.cancel != nil {
			continue // started meanwhile, by its start event
		}
		s.start(ctx, cs) // nothing if removed or not selected
		if cs.cancel != nil {
			cs.holdsSlot = true
			s.stoppedReads++
		}
	}
}

// releaseSlot gives back cs's slot of maxStoppedReads, if it holds one.
func (s *supervisor) releaseSlot(ctx context.Context, cs *containerState) {
	if !cs.holdsSlot {
		return
	}
	cs.holdsSlot = false
	s.stoppedReads--
	s.startStopped(ctx)
}

// selects applies the filter.
func (s *supervisor) selects(c Container) bool {
	return s.opts.Include == nil || s.opts.Include(c)
}

// start runs a reader for cs unless one runs already or it is known to
// be unwanted. A running reader follows a restart by itself.
func (s *supervisor) start(ctx context.Context, cs *containerState) {
	if cs.cancel != nil || cs.excluded || cs.unreadable || cs.removed {
		return
	}
	if cs.md == nil {
		cs.md = &s.opts.Metadata // before the reader encodes with it
	}
	s.stats.track(cs)
	rctx, cancel := context.WithCancel(ctx)
	cs.cancel, cs.startsSeen = cancel, cs.starts
	r := &reader{cs: cs, src: s.src, opts: s.opts, q: s.q,
		log: s.log.WithField("container_id", cs.short), stats: s.stats}
	s.readers.Add(1)
	s.stats.readerStarted(cs)
	go func() {
		defer s.readers.Done()
		r.run(rctx)
		s.stats.readerEnded(cs)
		select {
		case s.exited <- cs:
		case <-ctx.Done():
		}
	}()
}

func (s *supervisor) onExit(ctx context.Context, cs *containerState) {
	cs.cancel()
	cs.cancel = nil
	s.releaseSlot(ctx, cs)
	if cs.until.Swap(0) != 0 {
		cs.excluded = true // renamed out of the filter
	}
	switch {
	case cs.removed:
		delete(s.containers, cs.id)
		s.stats.untrack(cs)
	case cs.renamed:
		// Renamed while the reader ran: decide under the last name. A
		// reader that is not wanted returns at once (excluded), and one
		// started for a stopped container reads what is new and returns.
		cs.renamed = false
		if m := cs.meta.Load(); m != nil && cs.excluded && s.selects(m.info) {
			cs.readFrom(cs.renamedAt)
		}
		s.start(ctx, cs)
	case cs.starts != cs.startsSeen:
		// It started again while the reader was finishing the last run.
		s.start(ctx, cs)
	}
}

// remove forgets a destroyed container. A running reader is not cut: it
// reads to the end of the stream, finds the container gone and returns.
func (s *supervisor) remove(cs *containerState) {
	cs.removed = true
	s.store.forget(cs.id, cs)
	if cs.cancel == nil {
		delete(s.containers, cs.id)
		s.stats.untrack(cs)
	}
}
