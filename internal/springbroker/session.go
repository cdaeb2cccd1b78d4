package springbroker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

var errSessionClosed = errors.New("session closed")

// session is one WebSocket session: the WebSocketSession plus
// StompSubProtocolHandler's per-session state (decoder, SessionInfo).
type session struct {
	b      *Broker
	id     string
	remote string
	conn   *websocket.Conn

	// Reader goroutine only.
	decoder *bufferingDecoder
	// stompSession: StompSubProtocolHandler.sessions holds this id
	// (set by CONNECT, :305-310; kept after DISCONNECT until the WebSocket
	// ends, :684).
	stompSession  bool
	peerCloseCode int

	// writeMu serialises data-frame writes: the reader goroutine, the
	// heart-beat task and Publish callers all write.
	writeMu   sync.Mutex
	closeSent atomic.Bool
	closeCode atomic.Int32
}

func newSession(b *Broker, conn *websocket.Conn, remote string) *session {
	s := &session{
		b:       b,
		id:      newUUID(),
		remote:  remote,
		conn:    conn,
		decoder: newBufferingDecoder(b.cfg.MessageSizeLimit),
	}
	if l := b.cfg.WebSocketMessageSizeLimit; l > 0 {
		conn.SetReadLimit(int64(l))
	}
	// The container answers pings (Tomcat WsFrameBase); nothing reaches
	// StompSubProtocolHandler, so pings never touch lastReadTime.
	conn.SetPingHandler(func(data string) error {
		s.b.emit(Event{Kind: EventPing, Time: time.Now(), Session: s.id, Remote: s.remote, Data: []byte(data)})
		err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(closeTimeout))
		if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		}
		return nil
	})
	// Pongs reach Spring as PongMessage and StompSubProtocolHandler drops
	// them (handleMessageFromClient, :254-262): no activity either.
	conn.SetPongHandler(func(data string) error {
		s.b.emit(Event{Kind: EventPong, Time: time.Now(), Session: s.id, Remote: s.remote, Data: []byte(data)})
		return nil
	})
	conn.SetCloseHandler(func(code int, _ string) error {
		s.peerCloseCode = code
		// Client-initiated close: the container echoes the close frame.
		if s.closeSent.CompareAndSwap(false, true) {
			s.closeCode.Store(int32(code))
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(closeTimeout))
		}
		return nil
	})
	return s
}

// newUUID makes a random (version 4) UUID, like JdkIdGenerator, which
// AbstractWebSocketSession uses for session ids.
func newUUID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// run is the reader loop: StompSubProtocolHandler.handleMessageFromClient
// (:248-377) for every text or binary WebSocket message, in order.
func (s *session) run() {
	defer s.finish()
	for {
		mt, data, err := s.conn.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				// gorilla has sent close 1009, as Tomcat does for a message
				// larger than its buffer when partial messages are not
				// supported (SubProtocolWebSocketHandler.supportsPartialMessages
				// is false).
				if s.closeSent.CompareAndSwap(false, true) {
					s.closeCode.Store(websocket.CloseMessageTooBig)
				}
			}
			s.b.log.Debug("session read ended", zap.String("session", s.id), zap.Error(err))
			return
		}
		if s.closeSent.Load() {
			continue // closing: the container delivers nothing more
		}
		s.b.emit(Event{Kind: EventMessage, Time: time.Now(), Session: s.id, Remote: s.remote,
			Data: append([]byte{}, data...), Binary: mt == websocket.BinaryMessage})
		msgs, err := s.decoder.decode(data)
		if err != nil {
			// :283-290 — decode failure: ERROR with the exception message,
			// then close 1002.
			s.b.log.Debug("Failed to parse STOMP", zap.String("session", s.id), zap.Error(err))
			s.sendError(err.Error())
			continue
		}
		for _, m := range msgs {
			if m.heartbeat {
				s.b.emit(Event{Kind: EventHeartbeat, Time: time.Now(), Session: s.id, Remote: s.remote})
			} else {
				s.b.emit(Event{Kind: EventFrame, Time: time.Now(), Session: s.id, Remote: s.remote, Frame: m.frame.clone()})
			}
			if err := s.b.handleFromClient(s, m); err != nil {
				// :359-371 — handleError -> sendErrorMessage. Spring goes on
				// with the next message of the same batch on a session it
				// has just closed; this double stops.
				s.b.log.Debug("Failed to send message to MessageChannel", zap.String("session", s.id), zap.Error(err))
				s.sendError(err.Error())
				break
			}
		}
	}
}

// finish ends the session: TCP closed, registries cleaned, event reported.
func (s *session) finish() {
	s.closeSent.Store(true)
	_ = s.conn.Close()
	s.b.afterSessionEnded(s)
	reason := "client closed"
	switch {
	case s.peerCloseCode == 0 && s.closeCode.Load() == 0:
		reason = "connection dropped"
	case s.peerCloseCode == 0:
		reason = "closed by broker; no close reply from client"
	case s.closeCode.Load() != 0 && s.closeCode.Load() != int32(s.peerCloseCode):
		reason = "closed by broker"
	}
	s.b.emit(Event{Kind: EventClosed, Time: time.Now(), Session: s.id, Remote: s.remote,
		CloseCode: int(s.closeCode.Load()), PeerCloseCode: s.peerCloseCode, Err: reason})
	s.b.log.Debug("session closed", zap.String("session", s.id), zap.String("reason", reason))
}

// write sends one data message. Serialised with writeMu; fails once a close
// frame has been sent.
func (s *session) write(mt int, data []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.closeSent.Load() {
		return errSessionClosed
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(sendTimeLimit))
	return s.conn.WriteMessage(mt, data)
}

// sendFrame is StompSubProtocolHandler.sendToClient (:517-551): encode, write
// (binary or text), and in the finally block close with 1002 when the frame is
// an ERROR or the write failed.
func (s *session) sendFrame(command string, hs *nativeHeaders, body []byte, binary bool) {
	data, sent := encodeFrame(command, hs, body)
	mt := websocket.TextMessage
	if binary {
		mt = websocket.BinaryMessage
	}
	err := s.write(mt, data)
	if err == nil {
		s.b.emit(Event{Kind: EventSentFrame, Time: time.Now(), Session: s.id, Remote: s.remote, Frame: sent.clone(), Binary: binary})
	} else {
		s.b.log.Debug("Failed to send WebSocket message to client", zap.String("session", s.id), zap.Error(err))
	}
	if err != nil || command == "ERROR" {
		s.close(websocket.CloseProtocolError)
	}
}

// sendError is sendErrorMessage (:404-425) and the "Session closed." ERROR:
// ERROR with only a message header (content-length:0 added by the encoder),
// then close 1002 (CloseStatus.PROTOCOL_ERROR; for client-side errors since
// 5.1.8, gh-23039, for broker ERRORs since 4.0).
func (s *session) sendError(message string) {
	hs := newNativeHeaders(nil)
	hs.set("message", message)
	s.sendFrame("ERROR", hs, nil, false)
}

// sendHeartbeat writes the encoded HEARTBEAT message, "\n" (StompEncoder
// :94-97). A failed write closes the session, as in sendToClient.
func (s *session) sendHeartbeat() {
	if err := s.write(websocket.TextMessage, heartbeatPayload); err != nil {
		s.close(websocket.CloseProtocolError)
		return
	}
	s.b.emit(Event{Kind: EventSentHeartbeat, Time: time.Now(), Session: s.id, Remote: s.remote})
}

// close sends a close frame with the code (no reason, like CloseStatus(1002))
// once, and bounds the close handshake: the reader gets closeTimeout to see
// the client's reply, then the TCP connection is dropped.
func (s *session) close(code int) {
	if !s.closeSent.CompareAndSwap(false, true) {
		return
	}
	s.closeCode.Store(int32(code))
	_ = s.conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(closeTimeout))
	_ = s.conn.SetReadDeadline(time.Now().Add(closeTimeout))
}
