// Package springbroker is a small STOMP-over-WebSocket broker that reproduces,
// rule by rule, the behaviour of Spring Framework's *simple broker* as seen by
// a WebSocket client: spring-websocket's StompSubProtocolHandler in front of
// spring-messaging's SimpleBrokerMessageHandler, with StompDecoder,
// BufferingStompDecoder and StompEncoder on the wire.
//
// It is a TEST DOUBLE of Spring's semantics, not Spring. Spring cannot run on
// the machines where stompgate's end-to-end tests run, so this package stands
// in for it. Every behaviour it has is copied from a specific place in Spring's
// source; the comments cite the file, the method and approximate line numbers
// (spring-projects/spring-framework at 91eb42645e2, after v7.0.9, unless
// another version is named) and the version in which the behaviour changed.
// Where Spring's behaviour is surprising (no RECEIPT for SUBSCRIBE/SEND, a
// server heart-beat on every task tick after the first idle write interval, no
// CONNECTED at all for a CONNECT without accept-version) this package copies
// the surprise on purpose, because stompgate has to cope with the real thing.
//
// It is also the broker behind `stompgate demo` (internal/demo), which shows
// the failures Spring's rules cause with and without stompgate; that is why
// it is linked into the product binary. It shares no code with the proxy's
// data path (internal/wsconn), so a change there never changes the double
// the proxy is tested against.
//
// What it does not do (see README.md): SockJS, user destinations, Ant-style
// pattern subscriptions, selectors, ACK/NACK/transactions, authentication,
// send-time/buffer limits (close 4500), timeToFirstMessage, the broker relay,
// and permessage-deflate.
//
// Tests observe the broker through Config.OnEvent: every WebSocket message,
// every decoded STOMP frame and heart-beat, every WebSocket ping/pong received,
// every frame and heart-beat sent, heart-beat read timeouts and session ends
// are reported with a timestamp and the Spring-style session id.
package springbroker
