// Command hookstream runs the hookstream webhook service.
//
//	hookstream [serve]     embedded NATS + intake + processor + notifier (default)
//	hookstream intake      the HTTP API only, against --nats-url
//	hookstream processor   job processors only, against --nats-url
//	hookstream notifier    webhook delivery only, against --nats-url
//	hookstream settings    print every HOOKSTREAM_* setting as a Markdown table
//	hookstream version     print the version
//	hookstream help        print the usage
//
// Configuration comes from HOOKSTREAM_* environment variables or the
// matching flags; `hookstream settings` lists them with their defaults.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/hookstream/hookstream/services/notifier"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `usage: hookstream [serve|intake|processor|notifier|settings|version] [flags]

  serve      embedded NATS + all services in one process (default)
  intake     the HTTP API, against an external NATS (--nats-url)
  processor  job processors, against an external NATS
  notifier   webhook delivery, against an external NATS
  settings   print every HOOKSTREAM_* setting with its default
  version    print the version (also in every webhook's User-Agent)

Run 'hookstream <command> -h' for the flags.
`

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve", "intake", "processor", "notifier":
	case "settings":
		printSettings(stdout)
		return 0
	case "version":
		fmt.Fprintln(stdout, "hookstream", notifier.Version)
		return 0
	case "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hookstream: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	s, err := parseSettings(cmd, args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "hookstream: bad configuration: %v\n", err)
		return 2
	}
	logger, err := newLogger(s, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "hookstream: bad configuration: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := start(ctx, cmd, s, getenv, logger, stdout); err != nil && !(ctx.Err() != nil && errors.Is(err, context.Canceled)) {
		logger.Error("hookstream stopped", "error", err)
		return 1
	}
	logger.Info("hookstream stopped")
	return 0
}

func newLogger(s *settings, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return nil, fmt.Errorf("HOOKSTREAM_LOG_LEVEL (--log-level): %q is not debug, info, warn or error", s.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch s.LogFormat {
	case "text":
		return slog.New(newLazyHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(newLazyHandler(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("HOOKSTREAM_LOG_FORMAT (--log-format): %q is not text or json", s.LogFormat)
}

func printSettings(w io.Writer) {
	fmt.Fprintln(w, "| variable | flag | default | meaning |")
	fmt.Fprintln(w, "| --- | --- | --- | --- |")
	for _, st := range (&settings{}).table() {
		def := "`" + st.def + "`"
		if st.def == "" {
			def = "(empty)"
		}
		fmt.Fprintf(w, "| `%s` | `--%s` | %s | %s |\n", st.env, st.flag, def, strings.ReplaceAll(st.help, "|", "\\|"))
	}
}
