package springbroker

import "time"

// EventKind says what an Event reports.
type EventKind int

const (
	// EventOpen: a WebSocket session was established (Subprotocol is set).
	EventOpen EventKind = iota + 1
	// EventMessage: a WebSocket text or binary message arrived (Data,
	// Binary), before STOMP decoding. Ignored while the session is closing.
	EventMessage
	// EventFrame: a STOMP frame was decoded from the client (Frame). It is
	// reported before the broker acts on it.
	EventFrame
	// EventHeartbeat: a STOMP heart-beat was decoded from the client, i.e.
	// a WebSocket message made only of EOLs.
	EventHeartbeat
	// EventPing / EventPong: WebSocket control frames from the client
	// (Data). They never count as STOMP activity.
	EventPing
	EventPong
	// EventSentFrame: the broker wrote a STOMP frame (Frame, Binary).
	EventSentFrame
	// EventSentHeartbeat: the heart-beat task wrote "\n".
	EventSentHeartbeat
	// EventReadTimeout: the heart-beat task found no client activity for
	// longer than the read interval and ends the STOMP session (Err says
	// how long). An ERROR "Session closed." and close 1002 follow.
	EventReadTimeout
	// EventClosed: the session ended (CloseCode, PeerCloseCode, Err).
	EventClosed
)

var kindNames = map[EventKind]string{
	EventOpen: "open", EventMessage: "message", EventFrame: "frame",
	EventHeartbeat: "heartbeat", EventPing: "ping", EventPong: "pong",
	EventSentFrame: "sent-frame", EventSentHeartbeat: "sent-heartbeat",
	EventReadTimeout: "read-timeout", EventClosed: "closed",
}

func (k EventKind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "unknown"
}

// Event is one observation of the broker, reported through Config.OnEvent.
type Event struct {
	Kind EventKind
	// Time is when it happened: after the read for received things, after
	// the write for sent things.
	Time time.Time
	// Session is the Spring-style WebSocket session id (a random UUID, as
	// AbstractWebSocketSession's JdkIdGenerator makes).
	Session string
	// Remote is the client's address as the broker sees it (the client's
	// local address), to tie a session to a test connection.
	Remote string
	// Subprotocol negotiated at the handshake (EventOpen).
	Subprotocol string
	// Frame received or sent (EventFrame, EventSentFrame). A copy.
	Frame *Frame
	// Data of a WebSocket message or control frame (EventMessage,
	// EventPing, EventPong). A copy.
	Data []byte
	// Binary is true for a binary WebSocket message (EventMessage,
	// EventSentFrame).
	Binary bool
	// CloseCode is the code of the close frame the broker sent (its own, or
	// the echo of the client's), 0 if none (EventClosed).
	CloseCode int
	// PeerCloseCode is the code of the close frame received from the
	// client, 0 if none (EventClosed).
	PeerCloseCode int
	// Err describes why (EventReadTimeout, EventClosed).
	Err string
}
