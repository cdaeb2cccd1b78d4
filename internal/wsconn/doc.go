// Package wsconn is stompgate's WebSocket data path: RFC 6455 framing on a
// connection whose opening handshake is already done (by gorilla/websocket's
// Upgrader and Dialer, which stompgate keeps for the handshake).
//
// It exists for the proxy's hot path, where gorilla's streaming API costs an
// allocation per message read and two per message written, holds a read
// buffer per connection for the connection's life, and writes every message
// with its own system call. Here:
//
//   - New wraps the connection with its Options: a write timeout, the
//     stamps it keeps (ReadStamp, WriteStamp, WriteProgress) and the
//     control-frame hooks (OnPing, OnPong, OnClose). They are fixed there.
//   - One goroutine reads with Serve, which tells its handler when a read
//     returned bytes (Arrived) and when it is about to wait for more
//     (Parking). On Arrived the handler takes message payload with TryPiece
//     as slices of the read buffer, unmasked in place: nothing is
//     allocated per frame. TryPiece never reads, so the reading goroutine
//     waits in Serve's shallow frame.
//   - Read buffers are pooled and sized by the traffic (4 KiB or 32 KiB,
//     chosen from the size of the last read; 512 B for bytes that came
//     with the handshake). On a TCP connection the read goes through
//     syscall.RawConn, so that a connection with nothing to read parks
//     holding no buffer at all: an idle connection costs its Conn struct
//     and nothing more.
//   - Writes (BeginMessage, Write, EndMessage, or WriteMessage) are
//     buffered in a pooled buffer and sent by Flush, so a proxy can
//     coalesce all the messages it forwards from what it read into one
//     write(2) by flushing on Parking: only then, not before every read,
//     so that input which arrived while it worked is forwarded in the
//     same write. A connection with nothing buffered holds no write
//     buffer. WriteControl sends a ping, pong or close frame at once.
//   - The end: Linger closes as nginx's lingering close does, so that the
//     last frames reach a peer that is still sending; Close closes at
//     once; Release gives the buffers back.
//
// A proxy's pump, in outline:
//
//	var src *wsconn.Conn
//	src = wsconn.New(nc, wsconn.Server, proto, nil, wsconn.Options{
//		WriteTimeout: 10 * time.Second,
//		OnPing:       func(p []byte) { _ = src.WriteControl(wsconn.PongMessage, p, time.Time{}) },
//	})
//	err := src.Serve(func(ev wsconn.ServeEvent) bool {
//		if ev == wsconn.Parking {
//			_ = dst.FlushAt(src.LastReadAt()) // what was forwarded leaves in one write
//			return false
//		}
//		for {
//			p, ok, err := src.TryPiece()
//			if err != nil || !ok {
//				return err != nil
//			}
//			if p.First() {
//				dst.BeginMessage(p.Type)
//			}
//			_ = dst.Write(p.Data)
//			if p.Last() {
//				_ = dst.EndMessage()
//			}
//		}
//	})
//
// No extension is negotiated (stompgate never offers permessage-deflate), so
// reserved bits are protocol errors. Text is not checked for UTF-8, as in
// gorilla/websocket: a proxy forwards what it is given.
package wsconn
