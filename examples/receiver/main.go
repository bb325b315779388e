// Command receiver is a minimal webhook receiver for trying hookstream out:
// it verifies every webhook with the signing secret and prints it.
//
//	HOOKSTREAM_SECRET=whsec_… go run ./examples/receiver -addr 127.0.0.1:9000
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/hookstream/hookstream/shared/webhook"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "listen address")
	flag.Parse()
	secret := os.Getenv("HOOKSTREAM_SECRET")
	if _, err := webhook.ParseSecret(secret); err != nil {
		fmt.Fprintln(os.Stderr, "receiver: set HOOKSTREAM_SECRET to the whsec_… secret from GET /v1/signing-secret")
		os.Exit(2)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// 8 MiB: the largest webhook the embedded NATS server carries.
		body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
			log.Printf("REJECTED %s: %v", r.Header.Get("webhook-id"), err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		log.Printf("verified %s: %s", r.Header.Get("webhook-id"), body)
		w.WriteHeader(http.StatusNoContent)
	})
	log.Printf("receiving webhooks on http://%s/", *addr)
	srv := &http.Server{Addr: *addr, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
