package server

import (
	"context"
	"fmt"

	"github.com/credport/credport/gen"
)

// The legacy paths that older SDKs call (/connection, /connection/{connectionId},
// /connection/metadata) are declared in openapi.yaml as operations of their own and answered by
// the same code as their /connections counterparts: each adapter converts the request, calls
// it, and converts the success; errors pass through unchanged.

// ListConnectionsLegacy is GET /connection.
func (s *Server) ListConnectionsLegacy(ctx context.Context, req gen.ListConnectionsLegacyRequestObject) (gen.ListConnectionsLegacyResponseObject, error) {
	res, err := s.ListConnections(ctx, gen.ListConnectionsRequestObject{Params: gen.ListConnectionsParams(req.Params)})
	if err != nil {
		return nil, err
	}
	page, isPage := res.(listPage)
	if !isPage {
		return nil, fmt.Errorf("list connections: unexpected response %T", res)
	}
	return page, nil
}

// GetConnectionLegacy is GET /connection/{connectionId}.
func (s *Server) GetConnectionLegacy(ctx context.Context, req gen.GetConnectionLegacyRequestObject) (gen.GetConnectionLegacyResponseObject, error) {
	res, err := s.GetConnection(ctx, gen.GetConnectionRequestObject{ConnectionId: req.ConnectionId, Params: gen.GetConnectionParams(req.Params)})
	if err != nil {
		return nil, err
	}
	ok, isOK := res.(gen.GetConnection200JSONResponse)
	if !isOK {
		return nil, fmt.Errorf("get connection: unexpected response %T", res)
	}
	return gen.GetConnectionLegacy200JSONResponse{
		Body:    ok.Body,
		Headers: gen.GetConnectionLegacy200ResponseHeaders(ok.Headers),
	}, nil
}

// DeleteConnectionLegacy is DELETE /connection/{connectionId}.
func (s *Server) DeleteConnectionLegacy(ctx context.Context, req gen.DeleteConnectionLegacyRequestObject) (gen.DeleteConnectionLegacyResponseObject, error) {
	res, err := s.DeleteConnection(ctx, gen.DeleteConnectionRequestObject{ConnectionId: req.ConnectionId, Params: gen.DeleteConnectionParams(req.Params)})
	if err != nil {
		return nil, err
	}
	ok, isOK := res.(gen.DeleteConnection200JSONResponse)
	if !isOK {
		return nil, fmt.Errorf("delete connection: unexpected response %T", res)
	}
	return gen.DeleteConnectionLegacy200JSONResponse(ok), nil
}

// SetMetadataLegacy is POST /connection/metadata.
func (s *Server) SetMetadataLegacy(ctx context.Context, req gen.SetMetadataLegacyRequestObject) (gen.SetMetadataLegacyResponseObject, error) {
	if err := s.writeMetadata(ctx, *req.Body, false); err != nil {
		return nil, err
	}
	return gen.SetMetadataLegacy201JSONResponse(*req.Body), nil
}

// UpdateMetadataLegacy is PATCH /connection/metadata.
func (s *Server) UpdateMetadataLegacy(ctx context.Context, req gen.UpdateMetadataLegacyRequestObject) (gen.UpdateMetadataLegacyResponseObject, error) {
	if err := s.writeMetadata(ctx, *req.Body, true); err != nil {
		return nil, err
	}
	return gen.UpdateMetadataLegacy200JSONResponse(*req.Body), nil
}
