package inventory

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/service"
)

// maxBody bounds a request body.
const maxBody = 64 << 10

// apiError is the body of every error response. Fields names each bad input
// field and what is wrong with it.
type apiError struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields,omitempty"`
}

// listStock serves GET /stock: every SKU's stock, sorted by SKU.
func (s *Service) listStock(w http.ResponseWriter, r *http.Request) {
	list, err := listStock(r.Context(), s.pool)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if list == nil {
		list = []Stock{}
	}
	writeJSON(w, http.StatusOK, list)
}

// getStock serves GET /stock/{sku}.
func (s *Service) getStock(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	if !ValidSKU(sku) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no stock for sku " + strconv.Quote(service.Clip(sku))})
		return
	}
	st, err := getStock(r.Context(), s.pool, sku)
	if errors.Is(err, errNotFound) {
		writeJSON(w, http.StatusNotFound, apiError{Error: "no stock for sku " + strconv.Quote(service.Clip(sku))})
		return
	}
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// putStock serves PUT /stock/{sku} with {"available": N}: it creates the SKU
// (initial N) or adjusts its available stock to N, recording the adjustment.
func (s *Service) putStock(w http.ResponseWriter, r *http.Request) {
	sku := r.PathValue("sku")
	n, bad, reqErr := decodePut(w, r)
	if reqErr != nil {
		writeJSON(w, reqErr.status, apiError{Error: service.Clip(reqErr.msg)})
		return
	}
	if !ValidSKU(sku) {
		bad["sku"] = "must be 1-64 chars of [A-Za-z0-9_-]"
	}
	if len(bad) > 0 {
		writeJSON(w, http.StatusBadRequest, apiError{Error: "invalid stock", Fields: bad})
		return
	}
	st, adjusted, err := setAvailable(r.Context(), s.pool, sku, n)
	if err != nil {
		s.internalError(w, r, err)
		return
	}
	if adjusted {
		s.log.Info("stock adjusted", zap.String("sku", sku), zap.Int("available", st.Available), zap.Int("adjusted", st.Adjusted))
	} else {
		s.log.Info("stock created", zap.String("sku", sku), zap.Int("initial", st.Initial))
	}
	writeJSON(w, http.StatusOK, st)
}

// requestError is a request that cannot be read as JSON at all.
type requestError struct {
	status int
	msg    string
}

// decodePut reads the body of PUT /stock/{sku}: one JSON object whose only
// field is "available", an integer from 0 to MaxAvailable. bad names each bad
// field and what is wrong with it (never nil when reqErr is nil); reqErr is
// set for a body over maxBody (413) or one that is not a JSON object (400).
func decodePut(w http.ResponseWriter, r *http.Request) (n int, bad map[string]string, reqErr *requestError) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
		return 0, nil, &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", maxBody)}
	}
	if err != nil {
		return 0, nil, &requestError{http.StatusBadRequest, "read body: " + err.Error()}
	}
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return 0, nil, &requestError{http.StatusBadRequest, "malformed JSON: " + err.Error()}
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, nil, &requestError{http.StatusBadRequest, "malformed JSON: data after the object"}
	}
	bad = map[string]string{}
	for k := range fields {
		if k != "available" {
			bad[k] = "unknown field"
		}
	}
	var v int64
	raw, ok := fields["available"]
	switch {
	case !ok:
		bad["available"] = "required"
	case bytes.Equal(bytes.TrimSpace(raw), []byte("null")) || json.Unmarshal(raw, &v) != nil:
		bad["available"] = "must be an integer"
	default:
		if err := ValidAvailable(v); err != nil {
			bad["available"] = err.Error()
		}
	}
	return int(v), bad, nil
}

func (s *Service) internalError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
	writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal error"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // ">= 0" reads as written, not "\u003e= 0"
	_ = enc.Encode(v)
}
