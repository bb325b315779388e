// Package secretbox encrypts secrets at rest (signing secrets in JetStream
// buckets) with AES-256-GCM under a key the operator provides
// (HOOKSTREAM_SECRET_KEY) or, in embedded mode, one kept in the data dir.
// The same key masks the stream sequence in job ids (Box.JobIDMask).
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// KeySize is the key length in bytes.
const KeySize = 32

// prefix marks sealed values and their format version.
const prefix = "sb1:"

// ErrOpen is returned for a value that is not sealed with this key.
var ErrOpen = errors.New("secretbox: cannot open value (wrong HOOKSTREAM_SECRET_KEY or corrupt data)")

// Box seals and opens values.
type Box struct {
	aead cipher.AEAD
	// maskKey keys JobIDMask, derived from the key; masks keeps its HMACs
	// for reuse (one per job submitted and read: setting up the key costs
	// two hash blocks).
	maskKey []byte
	masks   sync.Pool
	// fingerprint is Fingerprint's value.
	fingerprint string
	// digestKey keys Digest, derived from the key.
	digestKey []byte
}

// New returns a box for a 32-byte key.
func New(key []byte) (*Box, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secretbox: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	fingerprint := base64.RawURLEncoding.EncodeToString(derive(key, "hookstream key fingerprint")[:16])
	return &Box{aead: aead, maskKey: derive(key, "hookstream job id mask"), fingerprint: fingerprint,
		digestKey: derive(key, "hookstream secret digest")}, nil
}

// Digest is a keyed digest of a secret (HMAC-SHA256 with a key derived
// from the box's), to be kept where a plain hash would let a reader of it
// test guesses of the secret: only holders of the key can compute it.
func (b *Box) Digest(secret []byte) []byte {
	mac := hmac.New(sha256.New, b.digestKey)
	mac.Write(secret)
	return mac.Sum(nil)
}

// derive is a value of its own for label, made from key (HMAC-SHA256).
func derive(key []byte, label string) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(label))
	return mac.Sum(nil)
}

// Fingerprint names the box's key without revealing it (16 bytes of an
// HMAC-SHA256 of a fixed label, base64). The services of one deployment
// compare theirs when they start (signing.CheckKey): one with another key
// would name jobs differently and could not open the stored secrets.
func (b *Box) Fingerprint() string { return b.fingerprint }

// JobIDMask is a 64-bit value that only holders of the key can compute from
// nonce (HMAC-SHA256 with a key derived from the box's). Intake and the
// processors mask a job's stream sequence with it in the job's id, so that
// ids do not tell how many jobs the whole deployment takes.
func (b *Box) JobIDMask(nonce string) uint64 {
	m, _ := b.masks.Get().(*masker)
	if m == nil {
		m = &masker{mac: hmac.New(sha256.New, b.maskKey)}
	}
	m.mac.Reset()
	m.buf = append(m.buf[:0], nonce...) // []byte(nonce) would allocate
	m.mac.Write(m.buf)
	var sum [sha256.Size]byte
	mask := binary.BigEndian.Uint64(m.mac.Sum(sum[:0]))
	b.masks.Put(m)
	return mask
}

// masker is a JobIDMask HMAC, kept for reuse with its input buffer.
type masker struct {
	mac hash.Hash
	buf []byte
}

// ParseKey decodes a key given as standard base64 of 32 bytes.
func ParseKey(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("not base64 of %d bytes (make one with: head -c 32 /dev/urandom | base64)", KeySize)
	}
	return key, nil
}

// Seal encrypts plaintext; the result is printable.
func (b *Box) Seal(plaintext []byte) string {
	nonce := make([]byte, b.aead.NonceSize(), b.aead.NonceSize()+len(plaintext)+b.aead.Overhead())
	_, _ = rand.Read(nonce)
	return prefix + base64.StdEncoding.EncodeToString(b.aead.Seal(nonce, nonce, plaintext, nil))
}

// Open decrypts what Seal produced.
func (b *Box) Open(sealed string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, ErrOpen
	}
	data, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(data) < b.aead.NonceSize() {
		return nil, ErrOpen
	}
	plain, err := b.aead.Open(nil, data[:b.aead.NonceSize()], data[b.aead.NonceSize():], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// KeyFile returns the key kept in dir/secret-key, creating it (mode 0600)
// on first use.
func KeyFile(dir string) ([]byte, error) {
	path := filepath.Join(dir, "secret-key")
	for range 2 {
		key, err := keyFile(dir, path)
		if !errors.Is(err, fs.ErrExist) {
			return key, err
		}
		// made by another process meanwhile: read it
	}
	return nil, fmt.Errorf("%s: made and gone again", path)
}

func keyFile(dir, path string) ([]byte, error) {
	if data, err := os.ReadFile(path); err == nil {
		key, err := ParseKey(string(data))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate secret key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	if err := CreateFile(path, []byte(base64.StdEncoding.EncodeToString(key)+"\n")); err != nil {
		return nil, err
	}
	return key, nil
}

// CreateFile makes the file at path (mode 0600) with data, whole and on
// disk before it is there: written to a file of its own, synced, then
// linked in place and the directory synced, so that a crash or a power loss
// leaves either no file or all of it, never an empty one. A file already
// there is fs.ErrExist: the caller reads that one instead.
func CreateFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".new-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fs.ErrExist
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
