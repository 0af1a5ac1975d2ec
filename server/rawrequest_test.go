package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/credport/credport/gen"
)

// sendRaw sends req through the real Echo stack, whether or not openapi.yaml declares its path
// and method: the response is checked against the contract when it does, and in any case must be
// a 2xx or an error in the documented shape.
func (v *env) sendRaw(req *http.Request) response {
	v.t.Helper()
	rec := httptest.NewRecorder()
	v.e.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	if _, _, err := v.router.FindRoute(req); err == nil {
		v.checkContract(req, res)
		return res
	}
	if res.status >= 400 && req.Method != http.MethodHead {
		var body gen.StdError
		dec := json.NewDecoder(bytes.NewReader(res.body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Error.Code == "" {
			v.t.Fatalf("%s %s answered %d with a body not in the error shape: %v: %s", req.Method, req.URL, res.status, err, res.body)
		}
	}
	return res
}

// newRawRequest is a request with the given Authorization header ("" for none) and, with a
// body, Content-Type application/json.
func newRawRequest(method, target, auth string, body io.Reader) *http.Request {
	req := httptest.NewRequest(method, target, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// errorLines are the lines the server logged at level ERROR.
func (v *env) errorLines() []string {
	var out []string
	for _, line := range strings.Split(v.logs.String(), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
		}
	}
	return out
}
