package payment

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
)

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
}

// getPayment serves GET /payments/{order_id}: the order's payment, or 404 if
// it has none (or the id cannot be an order id).
func (s *Service) getPayment(w http.ResponseWriter, r *http.Request) {
	orderID := r.PathValue("order_id")
	notFound := apiError{Error: "no payment for order " + strconv.Quote(orderID)}
	if event.ValidOrderID(orderID) != nil {
		writeJSON(w, http.StatusNotFound, notFound)
		return
	}
	p, err := getPayment(r.Context(), s.pool, orderID)
	if errors.Is(err, errNotFound) {
		writeJSON(w, http.StatusNotFound, notFound)
		return
	}
	if err != nil {
		s.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeJSON(w, http.StatusInternalServerError, apiError{Error: "internal error"})
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // ">= 0" reads as written, not "\u003e= 0"
	_ = enc.Encode(v)
}
