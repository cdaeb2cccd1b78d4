// Command stompbench benchmarks stompgate against nginx and against no
// proxy at all, on loopback, with STOMP frames over WebSocket.
//
//	stompbench run   [flags]   the whole benchmark (what `make bench` runs)
//	stompbench echo  [flags]   the upstream: answers CONNECT, echoes SEND as MESSAGE
//	stompbench load  [flags]   the load generator: one cell, prints JSON
//
// See bench/README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var rc int
	switch os.Args[1] {
	case "run":
		rc = runMain(os.Args[2:])
	case "echo":
		rc = echoMain(os.Args[2:])
	case "load":
		rc = loadMain(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
	default:
		usage()
		rc = 2
	}
	os.Exit(rc)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: stompbench run|echo|load [flags]   (stompbench <cmd> -h for flags)
`)
}
