package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/keepalive"
	"github.com/stompgate/stompgate/metrics"
	"github.com/stompgate/stompgate/proxy"
)

// RabbitMQ's bytes waiting in stompgate's receive queue are proof of life.
// A subscriber that stops reading blocks stompgate's writes to it; the
// MESSAGEs RabbitMQ keeps sending then wait unread in stompgate's socket,
// and the upstream heart-beat deadline (1 s × 1.5) passes with stompgate
// not reading. That is a late read (stompgate_late_reads_total, evidence
// "unread": the bytes wait in the receive queue), not a
// dead broker: the session must stay up.
func TestRabbitLateReadIsNotADeath(t *testing.T) {
	origin, path := rabbit(t)
	m := metrics.Discard()
	g := startGate(t, origin, func(o *proxy.Options) {
		o.Metrics = m
		o.WriteTimeout = 30 * time.Second
		o.STOMP.UpstreamHeartBeat = hb(time.Second, time.Second)
		o.STOMP.Keepalive = keepalive.Config{Tolerance: 1.5, IdleTimeout: -1}
	})

	// The subscriber: a small receive buffer, and no reads after RECEIPT.
	sub := stomptest.Dial(t, g.url(path), stomptest.Subprotocols("v12.stomp"), stomptest.ReceiveBuffer(4096))
	sub.Connect(guest("heart-beat", "0,0")...)
	dest := uniqueDest(t)
	sub.Subscribe("s1", dest, "receipt", "r1")
	sub.Expect(5*time.Second, "RECEIPT")

	// A publisher straight to RabbitMQ sends 32 KiB MESSAGEs until the late
	// read is counted (or RabbitMQ's flow control stops it).
	pub := stomptest.Dial(t, origin+path, stomptest.Subprotocols("v12.stomp"))
	pub.Connect(guest()...)
	body := []byte(strings.Repeat("x", 32<<10))
	sending := true
	deadline := time.Now().Add(15 * time.Second)
	for counter(t, m, "stompgate_late_reads_total", "hop", "upstream", "evidence", "unread") < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no upstream late read with evidence \"unread\" counted within 15s")
		}
		if sending {
			pub.Conn().SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			sending = pub.Conn().WriteMessage(websocket.TextMessage, stomptest.Encode("SEND", body, "destination", dest)) == nil
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if n := counter(t, m, "stompgate_liveness_failures_total", "hop", "upstream"); n != 0 {
		t.Fatalf("%v upstream liveness failures with RabbitMQ's bytes unread", n)
	}
	if n := g.h.ActiveSessions(); n != 1 {
		t.Fatalf("%d sessions active, want the subscriber's", n)
	}
}

// counter sums the series of a counter family that carry every label
// given as name, value pairs.
func counter(t testing.TB, m *metrics.Metrics, family string, labels ...string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range fams {
		if f.GetName() != family {
			continue
		}
		for _, s := range f.GetMetric() {
			matched := 0
			for _, l := range s.GetLabel() {
				for i := 0; i+1 < len(labels); i += 2 {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						matched++
					}
				}
			}
			if matched == len(labels)/2 {
				n += s.GetCounter().GetValue()
			}
		}
	}
	return n
}
