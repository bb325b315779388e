package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/hookstream/hookstream/shared/natstest"
)

// A split service reaches a NATS server as production ones are run: TLS
// with client certificates, a user of an operator-mode account given by a
// credentials file, allowed to subscribe to its own inbox prefix alone.
// It is ready only if every JetStream reply reaches it there.
func TestSplitServiceOverTLSWithCredsAndItsOwnInbox(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t, dir)

	operator, err := nkeys.CreateOperator()
	require.NoError(t, err)
	operatorPub, _ := operator.PublicKey()
	operatorClaims := jwt.NewOperatorClaims(operatorPub)
	_, err = operatorClaims.Encode(operator)
	require.NoError(t, err)
	account, err := nkeys.CreateAccount()
	require.NoError(t, err)
	accountPub, _ := account.PublicKey()
	accountClaims := jwt.NewAccountClaims(accountPub)
	accountClaims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accountJWT, err := accountClaims.Encode(operator)
	require.NoError(t, err)
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	userPub, _ := user.PublicKey()
	userClaims := jwt.NewUserClaims(userPub)
	userClaims.Pub.Allow.Add(">")
	userClaims.Sub.Allow.Add("_INBOX_notifier.>")
	userJWT, err := userClaims.Encode(account)
	require.NoError(t, err)
	seed, _ := user.Seed()
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	require.NoError(t, err)
	credsFile := filepath.Join(dir, "notifier.creds")
	require.NoError(t, os.WriteFile(credsFile, creds, 0o600))

	system, err := nkeys.CreateAccount()
	require.NoError(t, err)
	systemPub, _ := system.PublicKey()
	systemJWT, err := jwt.NewAccountClaims(systemPub).Encode(operator)
	require.NoError(t, err)
	resolver := &server.MemAccResolver{}
	require.NoError(t, resolver.Store(accountPub, accountJWT))
	require.NoError(t, resolver.Store(systemPub, systemJWT))
	tlsConfig, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true})
	require.NoError(t, err)
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: filepath.Join(dir, "js"),
		TrustedOperators: []*jwt.OperatorClaims{operatorClaims}, AccountResolver: resolver, SystemAccount: systemPub,
		TLS: true, TLSVerify: true, TLSConfig: tlsConfig, TLSTimeout: 2,
	})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	require.True(t, ns.ReadyForConnections(10*time.Second))

	addr := natstest.FreeAddr(t)
	done := startInProcess(t, "notifier", env(
		"HOOKSTREAM_NATS_URL", "tls://"+ns.Addr().String(),
		"HOOKSTREAM_NATS_CREDS", credsFile,
		"HOOKSTREAM_NATS_TLS_CA", pki.ca,
		"HOOKSTREAM_NATS_TLS_CERT", pki.clientCert,
		"HOOKSTREAM_NATS_TLS_KEY", pki.clientKey,
		"HOOKSTREAM_NATS_INBOX_PREFIX", "_INBOX_notifier",
		"HOOKSTREAM_SECRET_KEY", testSecretKey,
		"HOOKSTREAM_OPS_ADDR", addr))
	waitReady(t, addr, done)
}

// testPKI is a CA and the certificates it signed, as PEM files.
type testPKI struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTemplate := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	pki := testPKI{ca: filepath.Join(dir, "ca.pem")}
	writePEM(t, pki.ca, "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (certFile, keyFile string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		template := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, template, caCert, &key.PublicKey, caKey)
		require.NoError(t, err)
		keyDER, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		return certFile, keyFile
	}
	pki.serverCert, pki.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	pki.clientCert, pki.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return pki
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
}

// The credentials and TLS files of a split-mode connection are checked
// before it is made, each error naming its setting and never what a file
// holds; embedded mode refuses them.
func TestNATSClientAuthSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, _ := user.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	garbage := filepath.Join(dir, "garbage")
	require.NoError(t, os.WriteFile(garbage, []byte("SUAM not a seed\n"), 0o600))
	missing := filepath.Join(dir, "missing")

	ok := []struct {
		name     string
		givenEnv []string
	}{
		{"nkey", []string{"HOOKSTREAM_NATS_NKEY", seedFile}},
		{"tls", []string{"HOOKSTREAM_NATS_TLS_CA", pki.ca, "HOOKSTREAM_NATS_TLS_CERT", pki.clientCert, "HOOKSTREAM_NATS_TLS_KEY", pki.clientKey}},
		{"inbox prefix", []string{"HOOKSTREAM_NATS_INBOX_PREFIX", "_INBOX_notifier.eu"}},
		// As before these settings: the URL's credentials win (from the diff review).
		{"a token and a URL's credentials", []string{"HOOKSTREAM_NATS_TOKEN", "s3cr3t-token-0123456789", "HOOKSTREAM_NATS_URL", "nats://s3cr3t-token-0123456789@127.0.0.1:4222"}},
	}
	for _, tt := range ok {
		_, err := parseSettings("notifier", nil, env(append([]string{"HOOKSTREAM_SECRET_KEY", testSecretKey}, tt.givenEnv...)...), io.Discard)
		require.NoError(t, err, tt.name)
	}
	bad := []struct {
		name      string
		givenCmd  string
		givenEnv  []string
		wantInErr string
	}{
		{"creds missing", "notifier", []string{"HOOKSTREAM_NATS_CREDS", missing}, "HOOKSTREAM_NATS_CREDS"},
		{"creds not creds", "notifier", []string{"HOOKSTREAM_NATS_CREDS", seedFile}, "not a NATS credentials file"},
		{"nkey not a seed", "notifier", []string{"HOOKSTREAM_NATS_NKEY", garbage}, "HOOKSTREAM_NATS_NKEY"},
		{"two ways to authenticate", "notifier", []string{"HOOKSTREAM_NATS_NKEY", seedFile, "HOOKSTREAM_NATS_TOKEN", "s3cr3t-token-0123456789"}, "authenticates one way"},
		{"creds and an NKey", "notifier", []string{"HOOKSTREAM_NATS_NKEY", seedFile, "HOOKSTREAM_NATS_CREDS", seedFile}, "authenticates one way"},
		{"nkey and a user in the URL", "notifier", []string{"HOOKSTREAM_NATS_NKEY", seedFile, "HOOKSTREAM_NATS_URL", "nats://u:p@127.0.0.1:4222"}, "credentials in HOOKSTREAM_NATS_URL"},
		{"CA not PEM", "notifier", []string{"HOOKSTREAM_NATS_TLS_CA", garbage}, "no PEM certificate"},
		{"cert without key", "notifier", []string{"HOOKSTREAM_NATS_TLS_CERT", pki.clientCert}, "give both"},
		{"key of another cert", "notifier", []string{"HOOKSTREAM_NATS_TLS_CERT", pki.clientCert, "HOOKSTREAM_NATS_TLS_KEY", pki.serverKey}, "HOOKSTREAM_NATS_TLS_KEY"},
		{"inbox wildcard", "notifier", []string{"HOOKSTREAM_NATS_INBOX_PREFIX", "_INBOX.>"}, "HOOKSTREAM_NATS_INBOX_PREFIX"},
		{"inbox trailing dot", "notifier", []string{"HOOKSTREAM_NATS_INBOX_PREFIX", "_INBOX_x."}, "HOOKSTREAM_NATS_INBOX_PREFIX"},
		{"embedded server", "serve", []string{"HOOKSTREAM_NATS_TLS_CA", pki.ca}, "split mode only"},
		{"embedded server's inbox", "serve", []string{"HOOKSTREAM_NATS_INBOX_PREFIX", "_INBOX_x"}, "split mode only"},
	}
	for _, tt := range bad {
		_, err := parseSettings(tt.givenCmd, nil, env(append([]string{"HOOKSTREAM_SECRET_KEY", testSecretKey}, tt.givenEnv...)...), io.Discard)
		require.ErrorContains(t, err, tt.wantInErr, tt.name)
		require.NotContains(t, err.Error(), string(seed), tt.name)
		require.NotContains(t, err.Error(), "s3cr3t", tt.name)
	}
}
