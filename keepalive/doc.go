// Package keepalive decides, for one proxied STOMP session, when stompgate
// must emit keepalive traffic on each hop and when a peer must be declared
// dead.
//
// It is pure logic: no I/O, no goroutines, no timers. The proxy records
// timestamps on its hot paths (atomic stores), keeps one timer per session,
// and when that timer fires it passes a snapshot of the timestamps
// ([Activity]) to [Session.Tick]. Tick returns the [Actions] to execute and
// the time at which it wants to be called again. Tests drive it with a fake
// clock simply by passing times.
//
// The peers' rules the engine relies on (the STOMP specification, Spring,
// RabbitMQ, stomp.js, intermediaries), each with its source, are in
// docs/heartbeats.md under "The rules stompgate relies on"; "#name" below is
// an anchor there, and S1–S9 are the scenarios of docs/scenarios.md.
//
// # Two hops, two contracts (#terminate)
//
// stompgate is the STOMP server of the "down" hop (client ↔ stompgate) and
// the STOMP client of the "up" hop (stompgate ↔ broker). Each hop has its own
// negotiated heart-beat periods (#negotiation, see [Negotiate]); [Periods] holds
// them from stompgate's point of view (Send = what stompgate must send,
// Recv = what stompgate may expect to receive):
//
//	up.Send   = Tcs_up   = max(px,sy)  stompgate → broker
//	up.Recv   = Tsc_up   = max(sx,py)  broker → stompgate
//	down.Send = Tsc_down = max(dx,cy)  stompgate → client
//	down.Recv = Tcs_down = max(cx,dy)  client → stompgate
//	(0 on either side of a max means "off")
//
// # Contract per hop, mode Terminate (default)
//
// In Terminate mode stompgate owns both contracts: client EOLs are not
// relayed upstream and broker EOLs are not relayed to the client; the
// engine generates what each peer was promised. "idle" below is
// 40% of [Config.IdleTimeout] (24 s by default).
//
//	direction          engine decision                                         why
//	client → stompgate any byte counts (frames, EOL, WS ping, WS pong)          #any-data: any new data
//	                   no read for 1.5×Tcs_down → PingClient (probe)           #pings: browsers answer pings
//	                   (no heart-beats: no read for ClientPingInterval)         even in throttled tabs (#stompjs)
//	                   probe unanswered for PongTimeout → ClientDead           a late EOL alone never kills (S6)
//	stompgate → client Tsc_down>0: no data written for min(Tsc_down/2, idle)   #stompjs: closes after 2×ttl of
//	                   → SendClientEOL                                          no data; it cannot see pings
//	                   Tsc_down=0 or STOMP 1.0: nothing written for idle        #versions: no EOL for 1.0;
//	                   → PingClient                                             #intermediaries: 60 s (S2)
//	stompgate → broker nothing written for min(Tcs_up/2, idle) → SendUpstreamEOL #spring: reads at 3× (S1);
//	                   only after CONNECT is forwarded                          #strict-brokers: ActiveMQ
//	                   (#spring-before-connect), never after DISCONNECT is      Classic is strict 1.0×;
//	                   forwarded (#disconnect), only while the client is        #rabbitmq: its own sender uses
//	                   alive, never to a STOMP 1.0 broker                       ½ interval
//	broker → stompgate no data for Tsc_up×Tolerance, measured from the later   #any-data: a margin; Spring 3×,
//	                   of CONNECTED and the last upstream read → UpstreamDead   RabbitMQ 2–3× (S4)
//	                   no such deadline (Tsc_up=0, before CONNECTED): no sign   #pings: a frozen broker's kernel
//	                   of life for UpstreamPingInterval → PingUpstream; ping    still accepts bytes; RFC 6455
//	                   unanswered for PongTimeout → UpstreamDead (any read,      §5.5.2 makes its WebSocket
//	                   unread bytes or progress of a blocked write answers)     layer answer
//
// A deadline that has passed is checked once more against bytes that have
// reached the host but were not read in time (Activity.UpstreamHeard,
// ClientHeard: unread in the receive buffer, or received by the kernel
// since): on a saturated host the proxy may read a punctual peer late, and
// that is not the peer's death. When the client's EOL is due, the broker's is sent with
// it if it is nearly due or was just sent, so that with equal periods one
// wake-up serves both hops (the broker's spacing can only shrink, the
// client's stays within [T/2, T]).
//
// Because the upstream emitter only requires the client to be alive (not to
// be punctual), a throttled browser tab that answers pings keeps its broker
// session: this is what S1 and S6 show.
//
// What cannot be covered: before CONNECT has been forwarded nothing may be
// written upstream (Spring answers any pre-CONNECT byte with ERROR + 1002,
// #spring-before-connect), so an intermediary idle timeout on the upstream
// hop is not covered in that window; the proxy forwards CONNECT as soon as
// it arrives. A STOMP 1.0 broker, or one of a version stompgate does not
// know, gets no EOLs at all (1.0 has no heart-beats and no inter-frame EOLs,
// #versions). The broker → stompgate direction is the broker's job; the
// engine only watches it.
//
// # Mode Passthrough
//
// In Passthrough mode heart-beat headers are not rewritten and heart-beats
// are relayed as they come, so the client and the broker hold each other to
// one end-to-end contract; the proxy passes the same [Periods] for both hops
// (Negotiate(c, s, c, s)). The engine then only:
//
//   - probes the client exactly as in Terminate mode (PingClient after
//     1.5×Tcs or ClientPingInterval of silence, ClientDead after
//     PongTimeout), so a dead client is still detected by stompgate;
//   - covers intermediary idle timeouts toward the client: when nothing
//     (data or ping) was written to the client for idle, SendClientEOL if
//     the client negotiated server→client heart-beats (an extra EOL is
//     legal there), PingClient otherwise;
//   - covers intermediary idle timeouts toward the broker: when nothing was
//     written upstream for idle, SendUpstreamEOL, but only after the
//     broker's CONNECTED showed that it accepts client heart-beats
//     (Tcs_up > 0, STOMP ≥ 1.1), before DISCONNECT is forwarded and while
//     the client is alive.
//
// It never emits at Tsc/2 or Tcs/2 (the peers' own heart-beats do that) and
// has no heart-beat deadline for the broker (the client watches the broker
// end to end); it still pings the broker (PingUpstream, as above), so a
// frozen broker is found even when neither peer heart-beats.
//
// # Sessions that are not STOMP
//
// After [Session.NotSTOMP] the engine only pings the broker (when
// UpstreamPingInterval is set) and judges it by its answers; it no longer
// probes the client nor emits EOLs. [Session.Watching] tells the proxy
// whether a timer is still needed.
// Note that the idle-coverage EOLs can satisfy a broker whose read deadline
// (e.g. Spring's 3×Tcs) is longer than 40% of IdleTimeout even if the client
// stopped heart-beating but still answers pings.
//
// # Using it from the proxy
//
// A [Session] is not safe for concurrent use: the proxy serialises Tick and
// the lifecycle notifications (for example under a per-session mutex). After
// each lifecycle notification it calls Tick (or fires the timer now), because
// the new contract can move a deadline earlier. Actions must be executed
// promptly; the engine assumes each requested emission happens at the Tick's
// time, so a writer that lags does not cause duplicate emissions, and a
// ping's pong deadline runs from the Tick that requested it, so a blocked
// writer cannot postpone client death.
package keepalive
