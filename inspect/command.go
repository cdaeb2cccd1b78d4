package inspect

// Command is a STOMP command. It is a small enum so that the scanner can
// report it without allocating; [CmdUnknown] covers anything else, including
// lower-case spellings (commands are case sensitive).
type Command uint8

// Commands of STOMP 1.0–1.2. CmdStomp is kept distinct from CmdConnect so
// the proxy can forward what the client sent; use [Command.IsConnect] where
// the two must be treated alike.
const (
	CmdUnknown Command = iota
	CmdConnect
	CmdStomp
	CmdConnected
	CmdSend
	CmdSubscribe
	CmdUnsubscribe
	CmdAck
	CmdNack
	CmdBegin
	CmdCommit
	CmdAbort
	CmdDisconnect
	CmdMessage
	CmdReceipt
	CmdError
)

var commandNames = [...]string{
	CmdUnknown:     "UNKNOWN",
	CmdConnect:     "CONNECT",
	CmdStomp:       "STOMP",
	CmdConnected:   "CONNECTED",
	CmdSend:        "SEND",
	CmdSubscribe:   "SUBSCRIBE",
	CmdUnsubscribe: "UNSUBSCRIBE",
	CmdAck:         "ACK",
	CmdNack:        "NACK",
	CmdBegin:       "BEGIN",
	CmdCommit:      "COMMIT",
	CmdAbort:       "ABORT",
	CmdDisconnect:  "DISCONNECT",
	CmdMessage:     "MESSAGE",
	CmdReceipt:     "RECEIPT",
	CmdError:       "ERROR",
}

// String returns the wire spelling of c, or "UNKNOWN".
func (c Command) String() string {
	if int(c) < len(commandNames) {
		return commandNames[c]
	}
	return commandNames[CmdUnknown]
}

// IsConnect reports whether c opens a session (CONNECT or STOMP); servers
// must handle both the same way.
func (c Command) IsConnect() bool { return c == CmdConnect || c == CmdStomp }

// escapes reports whether header names and values of frames with command c
// use escape sequences; CONNECT, STOMP and CONNECTED never do, so that a
// client can connect before a version has been negotiated.
func (c Command) escapes() bool {
	return c != CmdConnect && c != CmdStomp && c != CmdConnected
}

// ParseCommand maps a command line (without its EOL) to a Command.
func ParseCommand(line []byte) Command {
	// A switch on string(line) compiles to comparisons without allocating.
	switch string(line) {
	case "SEND":
		return CmdSend
	case "MESSAGE":
		return CmdMessage
	case "ACK":
		return CmdAck
	case "NACK":
		return CmdNack
	case "SUBSCRIBE":
		return CmdSubscribe
	case "UNSUBSCRIBE":
		return CmdUnsubscribe
	case "RECEIPT":
		return CmdReceipt
	case "CONNECT":
		return CmdConnect
	case "STOMP":
		return CmdStomp
	case "CONNECTED":
		return CmdConnected
	case "BEGIN":
		return CmdBegin
	case "COMMIT":
		return CmdCommit
	case "ABORT":
		return CmdAbort
	case "DISCONNECT":
		return CmdDisconnect
	case "ERROR":
		return CmdError
	}
	return CmdUnknown
}
