package inspect_test

import (
	"fmt"

	"github.com/stompgate/stompgate/inspect"
)

// Forward frames and drop heart-beat EOLs, writing the kept ranges of each
// WebSocket message without copying them first.
func ExampleScanner() {
	messages := [][]byte{
		[]byte("\n"), // a heart-beat
		[]byte("SEND\ndestination:/queue/a\ncontent-le"),
		[]byte("ngth:5\n\nhe\x00lo\x00\n"),
	}
	var s inspect.Scanner
	var out []byte // stands in for the upstream connection
	for _, msg := range messages {
		s.Feed(msg)
		for {
			ev, err := s.Next()
			if err != nil {
				fmt.Println("send ERROR frame:", err)
				return
			}
			if ev.Kind == inspect.NeedMore {
				break
			}
			switch ev.Kind {
			case inspect.EOL:
				fmt.Println("heart-beat dropped")
				continue
			case inspect.HeadersEnd:
				dest, _ := s.Header("destination")
				fmt.Printf("%v to %s\n", ev.Command, dest)
			case inspect.FrameEnd:
				fmt.Println("frame of", s.FrameLen(), "bytes")
			}
			out = append(out, msg[ev.Start:ev.End]...)
		}
	}
	fmt.Printf("%q\n", out)
	// Output:
	// heart-beat dropped
	// SEND to /queue/a
	// frame of 50 bytes
	// heart-beat dropped
	// "SEND\ndestination:/queue/a\ncontent-length:5\n\nhe\x00lo\x00"
}

// Normalize the heart-beat header of a CONNECT frame and work out the
// resulting periods.
func ExampleRewriteHeartBeat() {
	connect := []byte("CONNECT\naccept-version:1.1,1.2\nheart-beat:10000, 10000\nhost:/\n\n\x00")
	v, ok := inspect.HeaderValue(connect, "heart-beat")
	client, err := inspect.HeartBeatHeader(v, ok)
	if err != nil {
		panic(err)
	}
	fixed, err := inspect.RewriteHeartBeat(nil, connect, client)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%q\n", fixed)

	server, _ := inspect.ParseHeartBeat([]byte("5000,20000"))
	cs, sc := inspect.Negotiate(client, server)
	fmt.Println("client->server", cs, "server->client", sc)
	// Output:
	// "CONNECT\naccept-version:1.1,1.2\nheart-beat:10000,10000\nhost:/\n\n\x00"
	// client->server 20s server->client 10s
}
