// Command protoproxy runs bench/prototype's Proxy, for stompbench load.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/stompgate/stompgate/bench/prototype"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	up := flag.String("upstream", "", "ws:// URL of the upstream")
	coalesce := flag.Bool("coalesce", false, "coalesce writes")
	ret := flag.Bool("return", true, "the handler returns after the upgrade")
	readBuf := flag.Int("read-buffer", 0, "read buffer bytes (0: as stompgate)")
	tunnel := flag.String("tunnel", "", "forward bytes without reading them: goroutine (two per connection) or epoll (one loop); see bench/prototype/tunnel.go")
	life := flag.Duration("max-lifetime", 15*time.Minute, "exit after this long")
	flag.Parse()
	u, err := url.Parse(*up)
	if err != nil || u.Scheme != "ws" {
		fmt.Fprintln(os.Stderr, "protoproxy: -upstream must be a ws:// URL")
		os.Exit(2)
	}
	time.AfterFunc(*life, func() { os.Exit(0) })
	switch *tunnel {
	case "":
	case "goroutine":
		ln, err := net.Listen("tcp", *listen)
		if err == nil {
			err = prototype.GoroutineTunnel(ln, u.Host)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case "epoll":
		fmt.Fprintln(os.Stderr, prototype.EpollTunnel(*listen, u.Host))
		os.Exit(1)
	default:
		fmt.Fprintln(os.Stderr, "protoproxy: -tunnel is goroutine or epoll")
		os.Exit(2)
	}
	srv := &http.Server{Addr: *listen, Handler: &prototype.Proxy{Up: u, Coalesce: *coalesce, Return: *ret, ReadBuf: *readBuf}, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}
