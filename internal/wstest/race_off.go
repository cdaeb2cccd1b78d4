//go:build !race

package wstest

// RaceEnabled: see race_on.go.
const RaceEnabled = false
