// Package internal holds test brokers and helpers shared by tests.
//
// This file pins dependencies that later packages import, so that `go mod
// tidy` keeps them while those packages are being written. It goes away once
// every dependency is imported by real code.
package internal

import (
	_ "github.com/caarlos0/env/v11"
	_ "github.com/gorilla/websocket"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
	_ "go.uber.org/zap"
	_ "golang.org/x/time/rate"
)
