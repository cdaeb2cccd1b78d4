// Command tunnel is a floor for stompbench, not a proxy: it forwards bytes
// between each client and the upstream without reading them, as nginx does
// after an Upgrade, so it prices what a Go proxy costs before any WebSocket
// or STOMP work (see tunnel.go). stompbench runs it as the targets
// tunnel-goroutine and tunnel-epoll; bench/README.md has the commands.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	upstream := flag.String("upstream", "", "host:port of the upstream")
	mode := flag.String("mode", "goroutine", "how it waits: goroutine (two per connection, Go's poller) or epoll (one loop of its own)")
	life := flag.Duration("max-lifetime", 15*time.Minute, "exit after this long")
	flag.Parse()
	if *upstream == "" {
		fmt.Fprintln(os.Stderr, "tunnel: -upstream host:port is required")
		os.Exit(2)
	}
	// stompbench stops it; the lifetime bounds an orphan.
	time.AfterFunc(*life, func() { os.Exit(0) })
	switch *mode {
	case "goroutine":
		ln, err := net.Listen("tcp", *listen)
		if err == nil {
			err = GoroutineTunnel(ln, *upstream)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case "epoll":
		fmt.Fprintln(os.Stderr, EpollTunnel(*listen, *upstream))
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "tunnel: -mode is goroutine or epoll")
		os.Exit(2)
	}
}
