package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrUnknownKey means a sealed value names a key the key ring does not hold.
var ErrUnknownKey = errors.New("sealed with an unknown encryption key")

// sealPrefix versions the sealed format: "v1:<key id>:<base64(nonce || ciphertext)>".
const sealPrefix = "v1"

// Keyring seals with its first key and opens with any of its keys, so keys can be rotated.
type Keyring struct {
	keys []sealingKey
}

type sealingKey struct {
	id   string
	aead cipher.AEAD
}

// ParseKeyring reads a comma-separated list of keys, each `id:base64` or bare base64 of 32 bytes.
// A bare key's id is the first 8 hex characters of the SHA-256 of its bytes.
func ParseKeyring(spec string) (*Keyring, error) {
	var ring Keyring
	seen := map[string]bool{}
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		id, b64, found := strings.Cut(entry, ":")
		if !found {
			id, b64 = "", entry
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: not base64", i+1)
		}
		if len(raw) != 32 {
			return nil, fmt.Errorf("encryption key %d: %d bytes, want 32", i+1, len(raw))
		}
		if id == "" {
			sum := sha256.Sum256(raw)
			id = hex.EncodeToString(sum[:])[:8]
		}
		if seen[id] {
			return nil, fmt.Errorf("encryption key %d: id %q used twice", i+1, id)
		}
		seen[id] = true
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: %w", i+1, err)
		}
		ring.keys = append(ring.keys, sealingKey{id: id, aead: aead})
	}
	if len(ring.keys) == 0 {
		return nil, errors.New("no encryption key given")
	}
	return &ring, nil
}

// NewKey returns the base64 of 32 random bytes, a fresh encryption key.
func NewKey() string {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	return base64.StdEncoding.EncodeToString(raw)
}

// ReadKeyFile reads the key stored in path; the error wraps os.ErrNotExist when there is none.
func ReadKeyFile(path string) (spec string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read key file: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// CreateKeyFile writes key to path (mode 0600) unless the file exists. It returns the key the
// file holds afterwards: key, or the one another process wrote first (then created is false).
func CreateKeyFile(path, key string) (spec string, created bool, err error) {
	// Write the key to a temporary file, then link it into place: another process starting at
	// the same moment sees either no file or a complete one, never an empty one.
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return "", false, fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return "", false, fmt.Errorf("create key file: %w", err)
	}
	if _, err := tmp.WriteString(key + "\n"); err != nil {
		_ = tmp.Close()
		return "", false, fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return "", false, fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", false, fmt.Errorf("write key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, os.ErrExist) {
		spec, err := ReadKeyFile(path) // another process made it first; use that one
		return spec, false, err
	} else if err != nil {
		return "", false, fmt.Errorf("create key file: %w", err)
	}
	return key, true, nil
}

// PrimaryID is the id of the key that seals.
func (k *Keyring) PrimaryID() string { return k.keys[0].id }

// Seal encrypts plaintext with the primary key. aad binds the sealed value to its owner (for
// example a connection's identity) so that it cannot be moved to another row.
func (k *Keyring) Seal(plaintext, aad []byte) (string, error) {
	key := k.keys[0]
	nonce := make([]byte, key.aead.NonceSize(), key.aead.NonceSize()+len(plaintext)+key.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	sealed := key.aead.Seal(nonce, nonce, plaintext, aad)
	return sealPrefix + ":" + key.id + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// Open decrypts a value made by Seal with any key of the ring.
func (k *Keyring) Open(sealed string, aad []byte) ([]byte, error) {
	prefix, rest, ok1 := strings.Cut(sealed, ":")
	id, b64, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || prefix != sealPrefix {
		return nil, errors.New("open sealed value: unknown format")
	}
	data, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("open sealed value: %w", err)
	}
	for _, key := range k.keys {
		if key.id != id {
			continue
		}
		n := key.aead.NonceSize()
		if len(data) < n {
			return nil, errors.New("open sealed value: too short")
		}
		plain, err := key.aead.Open(nil, data[:n], data[n:], aad)
		if err != nil {
			return nil, fmt.Errorf("open sealed value with key %s: %w", id, err)
		}
		return plain, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownKey, id)
}

// SealedKeyID is the id of the key that sealed a value, or "" when it is not a sealed value.
func SealedKeyID(sealed string) string {
	prefix, rest, ok := strings.Cut(sealed, ":")
	if !ok || prefix != sealPrefix {
		return ""
	}
	id, _, _ := strings.Cut(rest, ":")
	return id
}
