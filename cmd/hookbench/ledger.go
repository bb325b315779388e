package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hookstream/hookstream/shared/ledger"
)

// ledgerCheck drives jobs at o.rate for o.duration against any running
// hookstream, each with its own Idempotency-Key (retried with it until it
// has a clear answer), receives and verifies every webhook, waits for the
// drain and prints the ledger. It fails when anything was lost or
// unexpected, a signature was bad, or a key made two jobs. Kill and restart
// hookstream's processes while it runs to check the promise under faults.
func ledgerCheck(ctx context.Context, o options, stdout io.Writer) error {
	secret, err := ledger.SigningSecret(o.url, o.key)
	if err != nil {
		return err
	}
	l := ledger.New(secret)
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("start receiver: %w", err)
	}
	srv := &http.Server{Handler: l, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	rate := o.rate
	if rate == 0 {
		rate = 50
	}
	loadCtx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	wait := l.Load(loadCtx, o.url, o.key, "http://"+ln.Addr().String()+"/hook", rate)
	loadErr := wait()
	r := l.Drain(o.drain)
	fmt.Fprintf(stdout, "ledger: %s\n", r)
	switch {
	case loadErr != nil:
		return loadErr
	case !r.OK():
		return fmt.Errorf("the promise does not hold: %d lost, %d unexpected, %d bad signatures, %d split keys", r.Lost, r.Unexpected, r.BadSignatures, r.SplitKeys)
	}
	fmt.Fprintln(stdout, "PASS: nothing lost, nothing unexpected, every signature good, no split key")
	return nil
}
