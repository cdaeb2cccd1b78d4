package keepalive

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Defaults and fixed factors. Each one follows from the peers' rules in
// docs/heartbeats.md ("The rules stompgate relies on"); see the package
// documentation for the full contract.
const (
	// DefaultTolerance multiplies Tsc_up into the broker's read deadline.
	// The specification asks for an error margin without fixing one
	// (docs/heartbeats.md#any-data); Spring's simple broker gives up after
	// 3 periods (docs/heartbeats.md#spring), RabbitMQ after 2 to 3
	// (docs/heartbeats.md#rabbitmq).
	DefaultTolerance = 3.0

	// DefaultPongTimeout bounds how long a probed client may take to show
	// any sign of life. A WebSocket pong is answered by the browser or the
	// client library itself, even in a throttled tab, so a few seconds are
	// plenty; 10 s keeps a silent client's detection (1.5×10 s + 10 s =
	// 25 s with stomp.js defaults) below the 3 × 10 s = 30 s after which
	// Spring's simple broker would give up on the same client
	// (docs/heartbeats.md#spring).
	DefaultPongTimeout = 10 * time.Second

	// DefaultIdleTimeout is the smallest idle timeout assumed for
	// intermediaries: nginx proxy_read_timeout, Kong read_timeout and
	// RabbitMQ's (Cowboy's) idle_timeout all default to 60 s
	// (docs/heartbeats.md#intermediaries).
	DefaultIdleTimeout = 60 * time.Second

	// IdleFraction is the share of IdleTimeout after which a hop that
	// carried no bytes gets keepalive traffic. 40% fits two emissions in one
	// idle window with slack for a late timer or a slow write (24 s for
	// 60 s, just under SockJS's 25 s heartbeat,
	// docs/heartbeats.md#intermediaries).
	IdleFraction = 0.4

	// MaxClientPingInterval caps the derived ClientPingInterval: SockJS and
	// RFC 6202 use 25 s, and python-websockets warns that proxies may drop
	// connections idle for 30 s (docs/heartbeats.md#intermediaries).
	MaxClientPingInterval = 25 * time.Second

	// ProbeFactor: a client that negotiated heart-beats (Tcs_down > 0) is
	// probed with a ping after 1.5×Tcs_down without any read. The spec asks
	// receivers to be tolerant (docs/heartbeats.md#any-data); a probe is
	// cheap and never kills by itself, so it may come early, while a late
	// EOL from a throttled tab (docs/heartbeats.md#stompjs) is then bridged
	// by the browser's automatic pong (docs/heartbeats.md#pings).
	ProbeFactor = 1.5

	// EmitFraction: EOL emitters fire after EmitFraction × period without
	// writes. ½ covers ActiveMQ Classic's strict 1.0× enforcement and late
	// timers (docs/heartbeats.md#strict-brokers), matches RabbitMQ's own
	// sender (docs/heartbeats.md#rabbitmq) and gives a stomp.js client
	// spacing within [T/2, T], far from its 2×T limit
	// (docs/heartbeats.md#stompjs).
	EmitFraction = 0.5

	// MinInterval is the floor of every emitter and probe interval, so that
	// a tiny negotiated period cannot make the proxy spin.
	MinInterval = 100 * time.Millisecond
)

// Mode selects how stompgate treats heart-beats.
type Mode uint8

const (
	// Terminate (default): stompgate rewrites heart-beat headers and owns
	// both hops' contracts (docs/heartbeats.md#terminate).
	Terminate Mode = iota
	// Passthrough: headers and heart-beats are relayed unchanged; the engine
	// only probes the client and covers intermediary idle timeouts.
	Passthrough
)

// String returns "terminate" or "passthrough".
func (m Mode) String() string {
	switch m {
	case Terminate:
		return "terminate"
	case Passthrough:
		return "passthrough"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode parses "terminate" or "passthrough" (case-insensitive; empty means
// Terminate).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "terminate":
		return Terminate, nil
	case "passthrough":
		return Passthrough, nil
	}
	return Terminate, fmt.Errorf("keepalive: unknown mode %q (want terminate or passthrough)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler, so that configuration
// loaders (e.g. caarlos0/env) can parse a Mode directly.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Config holds the liveness settings shared by all sessions. Zero values mean
// "use the default".
type Config struct {
	// Tolerance (STOMPGATE_HEARTBEAT_TOLERANCE, default 3): the broker is
	// dead if no data arrived for Tsc_up × Tolerance. Must be ≥ 1.
	Tolerance float64

	// PongTimeout (default 10 s): a pinged client is dead if nothing (data
	// or pong) arrives within this time after the ping was requested.
	PongTimeout time.Duration

	// ClientPingInterval (default: 40% of IdleTimeout, at most 25 s): a
	// client without negotiated heart-beats (0,0, STOMP 1.0, or before
	// CONNECTED) is pinged after this much silence.
	ClientPingInterval time.Duration

	// UpstreamPingInterval: when no STOMP heart-beat deadline watches the
	// broker (it sends none, passthrough mode, not yet CONNECTED), the
	// broker is pinged after this much silence, and declared dead when
	// nothing (a pong, any byte, progress of a blocked write) follows
	// within PongTimeout. Zero disables it: the engine has no default here,
	// the configuration does (10 s).
	UpstreamPingInterval time.Duration

	// IdleTimeout (default 60 s): the smallest idle timeout of the
	// intermediaries on either hop. Each hop carries bytes at least every
	// IdleFraction (40%) of it. A negative value disables idle coverage
	// (no intermediaries).
	IdleTimeout time.Duration

	// Mode: Terminate (default) or Passthrough.
	Mode Mode
}

// WithDefaults returns c with every zero field replaced by its default and
// ClientPingInterval derived. Invalid values are clamped rather than
// rejected (use Validate to reject them): Tolerance below 1 becomes 1, and
// durations below MinInterval become MinInterval.
func (c Config) WithDefaults() Config {
	if c.Tolerance == 0 || math.IsNaN(c.Tolerance) {
		c.Tolerance = DefaultTolerance
	}
	if c.Tolerance < 1 {
		c.Tolerance = 1
	}
	if c.PongTimeout == 0 {
		c.PongTimeout = DefaultPongTimeout
	}
	c.PongTimeout = max(c.PongTimeout, MinInterval)
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.IdleTimeout > 0 {
		c.IdleTimeout = max(c.IdleTimeout, MinInterval)
	}
	if c.ClientPingInterval == 0 {
		c.ClientPingInterval = MaxClientPingInterval
		if c.IdleTimeout > 0 {
			c.ClientPingInterval = min(c.idleInterval(), MaxClientPingInterval)
		}
	}
	c.ClientPingInterval = max(c.ClientPingInterval, MinInterval)
	return c
}

// Validate reports configuration values that WithDefaults would have to
// clamp.
func (c Config) Validate() error {
	var errs []error
	if math.IsNaN(c.Tolerance) || math.IsInf(c.Tolerance, 0) || (c.Tolerance != 0 && c.Tolerance < 1) {
		errs = append(errs, fmt.Errorf("keepalive: Tolerance %v must be ≥ 1", c.Tolerance))
	}
	if c.PongTimeout < 0 || (c.PongTimeout > 0 && c.PongTimeout < MinInterval) {
		errs = append(errs, fmt.Errorf("keepalive: PongTimeout %v must be ≥ %v", c.PongTimeout, MinInterval))
	}
	if c.ClientPingInterval < 0 || (c.ClientPingInterval > 0 && c.ClientPingInterval < MinInterval) {
		errs = append(errs, fmt.Errorf("keepalive: ClientPingInterval %v must be ≥ %v", c.ClientPingInterval, MinInterval))
	}
	if c.UpstreamPingInterval < 0 || (c.UpstreamPingInterval > 0 && c.UpstreamPingInterval < MinInterval) {
		errs = append(errs, fmt.Errorf("keepalive: UpstreamPingInterval %v must be 0 or ≥ %v", c.UpstreamPingInterval, MinInterval))
	}
	if c.IdleTimeout > 0 && c.IdleTimeout < MinInterval {
		errs = append(errs, fmt.Errorf("keepalive: IdleTimeout %v must be ≥ %v (or negative to disable)", c.IdleTimeout, MinInterval))
	}
	if c.Mode > Passthrough {
		errs = append(errs, fmt.Errorf("keepalive: unknown %v", c.Mode))
	}
	return errors.Join(errs...)
}

// idleInterval is the longest a hop may stay silent: IdleFraction of
// IdleTimeout, or forever when idle coverage is disabled. It expects
// defaults to have been applied.
func (c Config) idleInterval() time.Duration {
	if c.IdleTimeout <= 0 {
		return forever
	}
	return max(time.Duration(float64(c.IdleTimeout)*IdleFraction), MinInterval)
}
