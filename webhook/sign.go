package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Signatures as the reference sends them: X-Nango-Hmac-Sha256 is the hex HMAC-SHA256 of the body
// with the signing key; the legacy X-Nango-Signature the hex SHA-256 of key and body together.

// HMAC is the X-Nango-Hmac-Sha256 value of body.
func HMAC(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// LegacySignature is the X-Nango-Signature value of body.
func LegacySignature(key, body []byte) string {
	h := sha256.New()
	h.Write(key)
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}
