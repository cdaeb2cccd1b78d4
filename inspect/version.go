package inspect

import "bytes"

// Version is a STOMP protocol version. The zero value is VersionUnknown.
// Versions are ordered, so the higher of two is the newer.
type Version uint8

const (
	VersionUnknown Version = iota
	V10
	V11
	V12
)

// String returns "1.0", "1.1", "1.2" or "unknown".
func (v Version) String() string {
	switch v {
	case V10:
		return "1.0"
	case V11:
		return "1.1"
	case V12:
		return "1.2"
	}
	return "unknown"
}

// Subprotocol returns the IANA WebSocket subprotocol name ("v12.stomp"), or
// "" for VersionUnknown.
func (v Version) Subprotocol() string {
	switch v {
	case V10:
		return "v10.stomp"
	case V11:
		return "v11.stomp"
	case V12:
		return "v12.stomp"
	}
	return ""
}

// ParseVersion maps "1.0", "1.1" and "1.2" to a Version; anything else is
// VersionUnknown.
func ParseVersion(b []byte) Version {
	switch string(b) {
	case "1.0":
		return V10
	case "1.1":
		return V11
	case "1.2":
		return V12
	}
	return VersionUnknown
}

// VersionFromSubprotocol maps a WebSocket subprotocol ("v10.stomp",
// "v11.stomp", "v12.stomp") to a Version; anything else, including "" and
// the legacy "stomp", is VersionUnknown.
func VersionFromSubprotocol(p string) Version {
	switch p {
	case "v10.stomp":
		return V10
	case "v11.stomp":
		return V11
	case "v12.stomp":
		return V12
	}
	return VersionUnknown
}

// VersionFromHeaders returns the version a session frame asks for, given
// the raw value of its version header and whether it is present:
//
//   - CONNECT and STOMP: value is accept-version; the result is the highest
//     version offered that this package knows (spaces around entries are
//     tolerated), VersionUnknown if none is known, and V10 if the header is
//     absent (which the specification defines as "1.0 only").
//   - CONNECTED: value is version; absent means V10.
//
// Any other command yields VersionUnknown.
func VersionFromHeaders(cmd Command, value []byte, present bool) Version {
	switch {
	case cmd.IsConnect():
		if !present {
			return V10
		}
		best := VersionUnknown
		for len(value) > 0 {
			item := value
			if i := bytes.IndexByte(value, ','); i >= 0 {
				item, value = value[:i], value[i+1:]
			} else {
				value = nil
			}
			best = max(best, ParseVersion(trimBlank(item)))
		}
		return best
	case cmd == CmdConnected:
		if !present {
			return V10
		}
		return ParseVersion(trimBlank(value))
	}
	return VersionUnknown
}

// trimBlank removes spaces and tabs at both ends; peers are not supposed to
// pad headers, but some do, and refusing them gains nothing.
func trimBlank(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
