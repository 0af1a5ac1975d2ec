package store_test

import (
	"bytes"
	"testing"

	"github.com/credport/credport/store"
)

// benchCredentials is about what an OAUTH2 import stores: the tokens, the expiry and the input
// again under raw; 600 bytes.
var benchCredentials = func() []byte {
	b := []byte(`{"access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2030-06-01T12:00:00Z",` +
		`"raw":{"access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2030-06-01T12:00:00Z",` +
		`"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",` +
		`"type":"OAUTH2"},` +
		`"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",` +
		`"type":"OAUTH2","pad":"`)
	b = append(b, bytes.Repeat([]byte("x"), 600-len(b)-2)...)
	return append(b, `"}`...)
}()

var benchAAD = []byte("connection\x001\x00github\x00bench-3-1234")

func benchKeyring(b *testing.B) *store.Keyring {
	b.Helper()
	ring, err := store.ParseKeyring("bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		b.Fatal(err)
	}
	return ring
}

func BenchmarkSeal(b *testing.B) {
	ring := benchKeyring(b)
	b.SetBytes(int64(len(benchCredentials)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ring.Seal(benchCredentials, benchAAD); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	ring := benchKeyring(b)
	sealed, err := ring.Seal(benchCredentials, benchAAD)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(benchCredentials)))
	b.ReportAllocs()
	for b.Loop() {
		plain, err := ring.Open(sealed, benchAAD)
		if err != nil {
			b.Fatal(err)
		}
		if len(plain) != len(benchCredentials) {
			b.Fatalf("opened %d bytes, sealed %d", len(plain), len(benchCredentials))
		}
	}
}
