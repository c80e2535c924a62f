package event

import (
	"errors"
	"fmt"
)

// ErrContract matches, with [errors.Is], every error this package returns
// because an event, a message or a payload breaks the contract. A consumer
// that sees it should dead-letter the message rather than retry it.
var ErrContract = errors.New("event contract violation")

// ContractError says which part of an event breaks the contract and how.
type ContractError struct {
	Field   string // what is wrong: a body field ("items[2].qty"), "body", "subject" or a header name
	Problem string // why, e.g. "must be 1-64 chars of [A-Za-z0-9_-]"

	err error // underlying cause, e.g. a *json.SyntaxError; may be nil
}

func (e *ContractError) Error() string {
	return "event: " + e.Field + ": " + e.Problem
}

// Is reports whether target is ErrContract.
func (e *ContractError) Is(target error) bool { return target == ErrContract }

// Unwrap returns the underlying cause, if any, such as a JSON decoding error.
func (e *ContractError) Unwrap() error { return e.err }

// violation builds a *ContractError with a formatted problem.
func violation(field, format string, args ...any) *ContractError {
	return &ContractError{Field: field, Problem: fmt.Sprintf(format, args...)}
}
