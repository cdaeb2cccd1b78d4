module github.com/stompgate/stompgate/bench

go 1.26.0

require (
	github.com/gorilla/websocket v1.5.3
	github.com/stompgate/stompgate v0.0.0
)

require (
	go.uber.org/multierr v1.10.0 // indirect
	go.uber.org/zap v1.28.0 // indirect
)

replace github.com/stompgate/stompgate => ../
