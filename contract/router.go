package contract

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// BatchPath is POST /connections/batch, whose items the validator leaves to the handler.
const BatchPath = "/connections/batch"

// NewRouter finds the operation of doc that a request is for.
func NewRouter(doc *openapi3.T) (routers.Router, error) {
	// openapi3filter validates the parameters of a route whose document says 3.1 by compiling
	// their schemas again on every request, which cost a read more CPU than the rest of it. The
	// router gets the document marked 3.0, so that parameters go through the built-in validator,
	// as bodies do; their schemas use nothing that only 3.1 has.
	asOpenAPI30 := *doc
	asOpenAPI30.OpenAPI = "3.0.3"
	router, err := gorillamux.NewRouter(&asOpenAPI30)
	if err != nil {
		return nil, fmt.Errorf("build request router: %w", err)
	}
	beneath, err := RouterBeneathExtensions(&asOpenAPI30)
	if err != nil {
		return nil, err
	}
	return contractRouter{main: router, beneath: beneath}, nil
}

// contractRouter routes as openapi.yaml declares, except that the methods a path credport adds
// beside a path template does not declare reach the template (GET /connections/batch is the
// connection named batch).
type contractRouter struct {
	main, beneath routers.Router
}

func (r contractRouter) FindRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := r.main.FindRoute(req)
	if errors.Is(err, routers.ErrMethodNotAllowed) {
		if below, belowParams, belowErr := r.beneath.FindRoute(req); belowErr == nil {
			return below, belowParams, nil
		}
	}
	return route, params, err
}

// RouterBeneathExtensions routes doc without the paths credport adds beside a path template
// (POST /connections/batch), so that their other methods reach the template's operations.
func RouterBeneathExtensions(doc *openapi3.T) (routers.Router, error) {
	without := *doc
	without.Paths = openapi3.NewPaths()
	for path, item := range doc.Paths.Map() {
		if path != BatchPath {
			without.Paths.Set(path, item)
		}
	}
	router, err := gorillamux.NewRouter(&without)
	if err != nil {
		return nil, fmt.Errorf("build request router: %w", err)
	}
	return router, nil
}
