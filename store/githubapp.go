package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultGitHubAPIBaseURL is the API a GitHub App lives on unless its integration names a GitHub
// Enterprise Server (https://HOST/api/v3).
const DefaultGitHubAPIBaseURL = "https://api.github.com"

// minAppKeyBits is the smallest RSA key accepted for a GitHub App; GitHub issues 2048-bit keys.
const minAppKeyBits = 2048

// ParseAppPrivateKey reads a GitHub App private key: an RSA key in PEM, PKCS#1 ("RSA PRIVATE
// KEY", as GitHub issues it) or PKCS#8 ("PRIVATE KEY"). Anything else is refused with an error
// that says what was found instead.
func ParseAppPrivateKey(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found: want an RSA private key in PEM " +
			`("-----BEGIN RSA PRIVATE KEY-----" or "-----BEGIN PRIVATE KEY-----"), as GitHub issues it`)
	}
	if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, errors.New("the private key is encrypted: decrypt it first (openssl pkey -in KEY.pem -out PLAIN.pem)")
	}
	var key any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("malformed PKCS#1 RSA private key: %w", err)
		}
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("malformed PKCS#8 private key: %w", err)
		}
	case "EC PRIVATE KEY":
		return nil, errors.New("an EC private key: GitHub App keys are RSA keys")
	case "PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE":
		return nil, fmt.Errorf("a PEM %q block, not a private key: want the GitHub App's RSA private key", block.Type)
	default:
		return nil, fmt.Errorf("a PEM %q block: want an RSA private key (\"RSA PRIVATE KEY\" or \"PRIVATE KEY\")", block.Type)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < minAppKeyBits {
			return nil, fmt.Errorf("an RSA key of %d bits: want at least %d", bits, minAppKeyBits)
		}
		return k, nil
	case *ecdsa.PrivateKey:
		return nil, errors.New("an ECDSA private key: GitHub App keys are RSA keys")
	case ed25519.PrivateKey:
		return nil, errors.New("an Ed25519 private key: GitHub App keys are RSA keys")
	default:
		return nil, fmt.Errorf("a %T private key: GitHub App keys are RSA keys", key)
	}
}

// NormalizeAPIBaseURL checks that s is an absolute http(s) URL without credentials, query or
// fragment, and returns it without a trailing slash. Empty is DefaultGitHubAPIBaseURL.
func NormalizeAPIBaseURL(s string) (string, error) {
	if s == "" {
		return DefaultGitHubAPIBaseURL, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("API base URL %q: want an absolute http(s) URL such as %s or https://HOST/api/v3", s, DefaultGitHubAPIBaseURL)
	}
	if u.User != nil {
		return "", fmt.Errorf("API base URL: must not carry credentials")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("API base URL %q: must not have a query or a fragment", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// AppPrivateKey opens the GitHub App private key of integration in. It is read from the database
// when asked for, so that it is in clear only for as long as the caller signs with it.
func (db *DB) AppPrivateKey(ctx context.Context, in Integration) (*rsa.PrivateKey, error) {
	var sealed *string
	err := db.gorm.WithContext(ctx).Raw("SELECT private_key FROM integrations WHERE id = ? AND environment_id = ?",
		in.ID, in.EnvironmentID).Scan(&sealed).Error
	if err != nil {
		return nil, fmt.Errorf("read private key of integration %q: %w", in.UniqueKey, err)
	}
	if sealed == nil || *sealed == "" {
		return nil, fmt.Errorf("private key of integration %q: %w", in.UniqueKey, ErrNotFound)
	}
	der, err := db.keys.Open(*sealed, appKeyAAD(in.EnvironmentID, in.UniqueKey))
	if err != nil {
		return nil, fmt.Errorf("private key of integration %q: %w", in.UniqueKey, err)
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key of integration %q: %w", in.UniqueKey, err)
	}
	rsaKey, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key of integration %q: a %T, want RSA", in.UniqueKey, key)
	}
	return rsaKey, nil
}

// appKeyAAD binds an integration's sealed GitHub App key to the integration and to its column,
// so that it cannot be swapped with the client secret.
func appKeyAAD(envID int64, uniqueKey string) []byte {
	return append(integrationAAD(envID, uniqueKey), "\x00private_key"...)
}
