package main

import (
	"context"
	"log/slog"
	"sync"
)

// lazyHandler defers a logger's With and WithGroup until a record is logged
// through it. hookstream attaches the ids of every job and delivery to a
// logger of its own (STYLE.md: ids attached once with With), and slog's
// handlers format those attributes as the logger is made: about 1.5 % of
// the server's CPU under load, for loggers that mostly log nothing
// (docs/performance.md, finding 15). A lazy logger formats them once, when
// it first logs.
type lazyHandler struct {
	parent slog.Handler // the handler it derives from, lazy or not
	attrs  []slog.Attr  // With's, or
	group  string       // WithGroup's
	once   sync.Once
	made   slog.Handler
}

// newLazyHandler makes h's With and WithGroup lazy.
func newLazyHandler(h slog.Handler) slog.Handler { return &lazyHandler{parent: h} }

func (l *lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.parent.Enabled(ctx, level)
}

func (l *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

func (l *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	return &lazyHandler{parent: l, attrs: attrs}
}

func (l *lazyHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &lazyHandler{parent: l, group: name}
}

// handler is the handler that With and WithGroup would have made.
func (l *lazyHandler) handler() slog.Handler {
	l.once.Do(func() {
		parent := l.parent
		if lazy, ok := parent.(*lazyHandler); ok {
			parent = lazy.handler()
		}
		switch {
		case l.group != "":
			l.made = parent.WithGroup(l.group)
		case len(l.attrs) > 0:
			l.made = parent.WithAttrs(l.attrs)
		default:
			l.made = parent
		}
	})
	return l.made
}
