package webhook_test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hookstream/hookstream/shared/webhook"
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

// A receiver verifies each webhook with the endpoint's secret before acting
// on it, and de-duplicates on webhook-id.
func ExampleVerify() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	handler := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(secret, r.Header, body, time.Now(), webhook.DefaultTolerance); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Process the event; remember r.Header.Get("webhook-id") to skip duplicates.
		w.WriteHeader(http.StatusNoContent)
	}
	_ = handler

	key, _ := webhook.ParseSecret(secret)
	h := http.Header{}
	webhook.SetHeaders(h, [][]byte{key}, "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	fmt.Println(h.Get("webhook-signature"))
	// Output: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=
}
