// Package inspect scans STOMP 1.0, 1.1 and 1.2 byte streams incrementally
// and without allocating, and provides the small header helpers the proxy
// needs (heart-beat negotiation, version detection, header rewriting).
// It performs no I/O.
//
// # Event model
//
// A [Scanner] is fed the payload of each WebSocket message as it arrives
// ([Scanner.Feed]) and then asked for events until the chunk is used up
// ([Scanner.Next] returns an event of kind [NeedMore]). A chunk may hold part
// of a frame, one frame, several frames or only EOLs, and one frame may span
// many chunks; the scanner keeps the state between chunks.
//
// Every event carries a byte range [Start, End) into the current chunk. The
// ranges of the events of one chunk are contiguous, in order and cover every
// byte of the chunk exactly once, so concatenating them reproduces the input
// (the pass-through invariant). For one frame the events are:
//
//	[Partial...] FrameStart [Partial...] HeadersEnd [Body...] FrameEnd
//
// and EOLs outside frames (heart-beats, or the optional EOLs after a NUL)
// are reported as [EOL] events. [Partial] covers command-line or header bytes
// whose line continues in a later chunk.
//
// The model is offset based rather than "here is a parsed frame" because the
// proxy's job is to forward bytes: it writes the ranges it keeps straight
// from the receive buffer and skips the ones it drops (heart-beat EOLs that
// it regenerates itself), so the common path copies nothing and allocates
// nothing. Only the header section of a frame that spans chunks is copied,
// into a buffer the scanner reuses, because headers must be contiguous to be
// queried. Bodies are never buffered: with content-length they are skipped
// in one step, without it the NUL is found with [bytes.IndexByte].
//
// When a frame must be changed (heart-beat in CONNECT and CONNECTED, a
// receipt added to DISCONNECT), the proxy collects the ranges of that one
// small frame and uses [RewriteHeartBeat] or [AddHeader].
//
// # Leniency
//
// The scanner accepts an optional CR before every LF in every version,
// because real peers send CRLF regardless of what they negotiated. It does
// not validate header escapes (only unescaping does), command names, or
// whether a command may carry a body: the proxy forwards such frames and the
// broker, which owns those rules, answers them. It rejects what would make
// framing ambiguous: NUL inside the header section, header lines without a
// name and colon, a malformed content-length, a missing NUL after a
// content-length body, and a CR between frames not followed by LF.
package inspect
