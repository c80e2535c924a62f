package order

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/jetsaga/jetsaga/internal/event"
	"github.com/jetsaga/jetsaga/internal/outbox"
	"github.com/jetsaga/jetsaga/internal/pg"
	"github.com/jetsaga/jetsaga/internal/service"
	"github.com/jetsaga/jetsaga/internal/telemetry"
)

// HTTP API limits.
const (
	MaxBodyBytes         = 64 << 10 // larger POST /orders bodies get 413
	MaxIdempotencyKeyLen = 128
)

// HeaderIdempotencyKey names the request header that makes POST /orders
// idempotent; HeaderIdempotentReplayed is set on a response that returns the
// order an earlier request with the same key placed.
const (
	HeaderIdempotencyKey     = "Idempotency-Key"
	HeaderIdempotentReplayed = "Idempotent-Replayed"
)

// errKeyReused: an Idempotency-Key sent again with a different body.
var errKeyReused = errors.New("idempotency key reused with a different request body")

// PlaceRequest is the body of POST /orders.
type PlaceRequest struct {
	CustomerID string       `json:"customer_id"`
	Items      []event.Item `json:"items"`
}

// PlaceResponse is the body of a 202 to POST /orders.
type PlaceResponse struct {
	OrderID   string `json:"order_id"`
	Status    Status `json:"status"`
	StatusURL string `json:"status_url"`
}

// OrderView is the body of GET /orders/{id}: the write model's order.
type OrderView struct {
	OrderID    string       `json:"order_id"`
	CustomerID string       `json:"customer_id"`
	Items      []event.Item `json:"items"`
	TotalCents int64        `json:"total_cents"`
	Status     Status       `json:"status"`
	Reason     string       `json:"reason"`
	Version    int          `json:"version"`
	CreatedAt  time.Time    `json:"created_at"`
	UpdatedAt  time.Time    `json:"updated_at"`
}

// ErrorResponse is the body of every 4xx and 5xx. Fields, for an invalid
// order, names each bad field and what is wrong with it.
type ErrorResponse struct {
	Error  string            `json:"error"`
	Fields map[string]string `json:"fields,omitempty"`
}

// StatusURL returns the path where an order can be read back.
func StatusURL(orderID string) string { return "/orders/" + orderID }

func newOrderID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new order id: %w", err)
	}
	return id.String(), nil
}

// handlePlace serves POST /orders: validate, then write the order and its
// order.created in one transaction, and answer 202 with where to follow it.
// With an Idempotency-Key, a request repeating an earlier one (same key, same
// body) gets the earlier answer and places nothing; a different body with a
// used key gets 422.
func (s *Service) handlePlace(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r.Header)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: service.Clip(err.Error())})
		return
	}
	req, status, err := decodePlaceRequest(w, r)
	if err != nil {
		writeJSON(w, status, ErrorResponse{Error: err.Error()})
		return
	}
	id, err := s.newID()
	if err != nil {
		s.internalError(w, "new order id", err)
		return
	}
	o, err := New(id, req.CustomerID, req.Items, s.now())
	var invalid *ValidationError
	if errors.As(err, &invalid) {
		writeJSON(w, http.StatusBadRequest, ErrorResponse{Error: "invalid order", Fields: invalid.Fields})
		return
	}
	if err != nil {
		s.internalError(w, "new order", err)
		return
	}

	placed, replayed, err := s.place(r.Context(), o, key, requestHash(req))
	switch {
	case errors.Is(err, errKeyReused):
		writeJSON(w, http.StatusUnprocessableEntity, ErrorResponse{
			Error: "Idempotency-Key was already used with a different request body"})
		return
	case err != nil:
		s.internalError(w, "place order", err)
		return
	}
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(telemetry.AttrOrderID.String(placed.ID))
	}
	if replayed {
		w.Header().Set(HeaderIdempotentReplayed, "true")
		s.log.Debug("idempotent replay", zap.String("order_id", placed.ID))
	} else {
		s.placed.Inc()
		s.log.Info("order placed", zap.String("order_id", placed.ID), zap.String("customer_id", placed.CustomerID),
			zap.Int64("total_cents", placed.TotalCents), zap.Int("items", len(placed.Items)), telemetry.LogField(r.Context()))
	}
	w.Header().Set("Location", StatusURL(placed.ID))
	// A replay answers what the first request was answered: the order as
	// accepted. GET the status URL for where it stands now.
	writeJSON(w, http.StatusAccepted, PlaceResponse{OrderID: placed.ID, Status: Pending, StatusURL: StatusURL(placed.ID)})
}

// placeOne writes o and its order.created in a transaction of its own, and
// wakes the outbox relay to read it back (placeAll hands its rows over
// instead). With an idempotency key already used, it writes nothing and
// returns the order that key placed (replayed true), or errKeyReused when
// that order came from a different request.
func (s *Service) placeOne(ctx context.Context, o Order, key, hash string) (placed Order, replayed bool, err error) {
	created, err := event.New(event.OrderCreated, o.ID, "", o.Created(), o.CreatedAt)
	if err != nil {
		return Order{}, false, fmt.Errorf("build %s for order %s: %w", event.OrderCreated, o.ID, err)
	}
	outbox.Traced(ctx, []event.Event{created})
	o.CreatedEventID, o.Trace = created.ID, created.Trace
	err = pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		inserted, err := insertOrder(ctx, tx, o, key, hash)
		if err != nil {
			return err
		}
		if inserted {
			placed = o
			return outbox.Add(ctx, tx, created)
		}
		// The key's winner is committed: the insert waited for it.
		prev, prevHash, err := orderByIdempotencyKey(ctx, tx, key)
		if err != nil {
			return err
		}
		if prevHash != hash {
			return fmt.Errorf("order %s: %w", prev.ID, errKeyReused)
		}
		placed, replayed = prev, true
		return nil
	})
	if err != nil {
		return Order{}, false, err
	}
	if !replayed {
		s.notify()
	}
	return placed, replayed, nil
}

// handleGet serves GET /orders/{id} from the write model: read-your-writes
// right after the 202.
func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if event.ValidOrderID(id) != nil {
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "order not found"})
		return
	}
	o, err := getOrder(r.Context(), s.pool, id)
	if errors.Is(err, ErrNotFound) {
		writeJSON(w, http.StatusNotFound, ErrorResponse{Error: "order not found"})
		return
	}
	if err != nil {
		s.internalError(w, "get order", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, OrderView{
		OrderID: o.ID, CustomerID: o.CustomerID, Items: o.Items, TotalCents: o.TotalCents,
		Status: o.Status, Reason: o.Reason, Version: o.Version, CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	})
}

// idempotencyKey returns the request's Idempotency-Key, "" when it has none:
// one header of 1 to MaxIdempotencyKeyLen printable ASCII characters.
func idempotencyKey(h http.Header) (string, error) {
	vals := h.Values(HeaderIdempotencyKey)
	switch {
	case len(vals) == 0:
		return "", nil
	case len(vals) > 1:
		return "", errors.New("invalid Idempotency-Key header: given more than once")
	}
	key := vals[0]
	if len(key) < 1 || len(key) > MaxIdempotencyKeyLen {
		return "", fmt.Errorf("invalid Idempotency-Key header: must be 1-%d printable ASCII characters", MaxIdempotencyKeyLen)
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", fmt.Errorf("invalid Idempotency-Key header: must be 1-%d printable ASCII characters", MaxIdempotencyKeyLen)
		}
	}
	return key, nil
}

// decodePlaceRequest reads one JSON object of at most MaxBodyBytes with only
// known fields, each once and spelt exactly (encoding/json alone would take
// CUSTOMER_ID for customer_id, and the last of two customer_id keys). The
// body must be declared application/json: a form or text/plain body, which
// any web page may send without a CORS preflight, is refused. On failure it
// returns the status to answer: 415 for another content type, 413 for a
// body too large, 400 for anything else; the error quotes at most
// service.MaxEcho bytes of any value.
func decodePlaceRequest(w http.ResponseWriter, r *http.Request) (PlaceRequest, int, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return PlaceRequest{}, http.StatusUnsupportedMediaType,
			fmt.Errorf("Content-Type must be application/json, got %q", service.Clip(r.Header.Get("Content-Type")))
	}
	tooLarge := fmt.Errorf("request body exceeds %d bytes", MaxBodyBytes)
	if r.ContentLength > MaxBodyBytes {
		return PlaceRequest{}, http.StatusRequestEntityTooLarge, tooLarge
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) {
		return PlaceRequest{}, http.StatusRequestEntityTooLarge, tooLarge
	}
	if err != nil {
		return PlaceRequest{}, http.StatusBadRequest, fmt.Errorf("read body: %w", err)
	}
	if err := exactKeys(json.NewDecoder(bytes.NewReader(raw)), placeKeys); err != nil {
		return PlaceRequest{}, http.StatusBadRequest, fmt.Errorf("malformed JSON: %s", service.Clip(err.Error()))
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var req PlaceRequest
	err = dec.Decode(&req)
	if err == nil {
		// Nothing but white space may follow the object.
		if err = dec.Decode(&struct{}{}); errors.Is(err, io.EOF) {
			return req, 0, nil
		} else if err == nil {
			err = errors.New("more than one JSON value")
		}
	}
	return PlaceRequest{}, http.StatusBadRequest, fmt.Errorf("malformed JSON: %s", service.Clip(err.Error()))
}

// keys is the shape of a JSON request: the keys an object may hold, each
// with the keys of its value (nil for a scalar; an array's elements have
// the array's keys).
type keys map[string]keys

// placeKeys is the shape of POST /orders.
var placeKeys = keys{"customer_id": nil, "items": keys{"sku": nil, "qty": nil, "unit_price_cents": nil}}

// exactKeys walks one JSON value and refuses a key that is not in want,
// spelt exactly, or that an object holds twice. Syntax errors are left to
// the decoder that follows.
func exactKeys(dec *json.Decoder, want keys) error {
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	switch tok {
	case json.Delim('{'):
		seen := make(map[string]bool, len(want))
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil
			}
			key, _ := kt.(string)
			sub, ok := want[key]
			switch {
			case !ok:
				return fmt.Errorf("json: unknown field %q", service.Clip(key))
			case seen[key]:
				return fmt.Errorf("json: field %q given twice", key)
			}
			seen[key] = true
			if err := exactKeys(dec, sub); err != nil {
				return err
			}
		}
		_, _ = dec.Token() // '}'
	case json.Delim('['):
		for dec.More() {
			if err := exactKeys(dec, want); err != nil {
				return err
			}
		}
		_, _ = dec.Token() // ']'
	}
	return nil
}

// requestHash is the SHA-256 of the request's canonical JSON encoding, so
// that the same order sent with other spacing or field order hashes alike.
func requestHash(req PlaceRequest) string {
	canonical, err := json.Marshal(req)
	if err != nil {
		// A struct of strings and integers always encodes.
		panic(fmt.Sprintf("order: encode request: %v", err))
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

func (s *Service) internalError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what+" failed", zap.Error(err))
	writeJSON(w, http.StatusInternalServerError, ErrorResponse{Error: "internal error"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // ">= 0" reads as written, not "\u003e= 0"
	_ = enc.Encode(v)
}
