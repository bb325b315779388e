// Package webhook signs and verifies webhooks in the Standard Webhooks format
// (https://www.standardwebhooks.com): a webhook-id, a webhook-timestamp in
// unix seconds and a webhook-signature of
// "v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>", several signatures
// separated by spaces while a secret is being rotated.
//
// Secrets are "whsec_" followed by the standard base64 of 24 to 64 random
// bytes. Any Standard Webhooks verifier accepts what [Signer] produces;
// [Verify] is the matching receiver side, for tests and Go receivers.
package webhook
