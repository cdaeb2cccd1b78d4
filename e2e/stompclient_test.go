package e2e

import (
	"testing"

	"github.com/stompgate/stompgate/internal/stomptest"
)

// guest is CONNECT's headers for RabbitMQ's default guest account (the
// Spring double ignores the credentials), then extra.
func guest(extra ...string) []string {
	return append([]string{"accept-version", "1.2", "host", "/", "login", "guest", "passcode", "guest"}, extra...)
}

// dialLive dials a STOMP 1.2 client whose reader runs for the whole
// connection (stomptest.InBackground), as the liveness scenarios need: it
// answers pings and keeps counting heart-beats through a quiet period.
func dialLive(t testing.TB, url string, opts ...stomptest.Option) *stomptest.Client {
	t.Helper()
	return stomptest.Dial(t, url, append([]stomptest.Option{stomptest.Subprotocols("v12.stomp"), stomptest.InBackground()}, opts...)...)
}
