package inspect

import (
	"errors"
	"strconv"
)

// Error kinds. Every error returned by this package wraps exactly one of
// them, so callers pick the reaction (ERROR frame text, close code, metric
// label) with errors.Is.
var (
	// ErrSyntax marks input that is not a STOMP frame stream.
	ErrSyntax = errors.New("syntax error")
	// ErrHeaderTooLarge marks a header section longer than Limits.MaxHeaderBytes.
	ErrHeaderTooLarge = errors.New("header section too large")
	// ErrTooManyHeaders marks a frame with more than Limits.MaxHeaders headers.
	ErrTooManyHeaders = errors.New("too many headers")
	// ErrFrameTooLarge marks a frame longer than Limits.MaxFrameBytes.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrInvalidHeader marks a header name or value passed to AddHeader that
	// cannot be written without breaking the frame.
	ErrInvalidHeader = errors.New("invalid header")
)

// Error is the concrete error type of this package.
//
// Its message is short, contains no colon or line break, and is meant to be
// sent to the peer as the `message` header of a STOMP ERROR frame, e.g.
// "frame exceeds 1048576 bytes".
type Error struct {
	Kind error // one of ErrSyntax, ErrHeaderTooLarge, ErrTooManyHeaders, ErrFrameTooLarge, ErrInvalidHeader
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the kind so that errors.Is(err, ErrFrameTooLarge) works.
func (e *Error) Unwrap() error { return e.Kind }

//go:noinline // keeps error paths out of the scanner's hot frames
func syntaxError(msg string) *Error { return &Error{Kind: ErrSyntax, Msg: msg} }

//go:noinline // keeps error paths out of the scanner's hot frames
func frameTooLarge(limit int) *Error {
	return &Error{Kind: ErrFrameTooLarge, Msg: "frame exceeds " + strconv.Itoa(limit) + " bytes"}
}

//go:noinline // keeps error paths out of the scanner's hot frames
func headerTooLarge(limit int) *Error {
	return &Error{Kind: ErrHeaderTooLarge, Msg: "header section exceeds " + strconv.Itoa(limit) + " bytes"}
}

//go:noinline // keeps error paths out of the scanner's hot frames
func tooManyHeaders(limit int) *Error {
	return &Error{Kind: ErrTooManyHeaders, Msg: "frame has more than " + strconv.Itoa(limit) + " headers"}
}
