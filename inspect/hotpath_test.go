package inspect

// Guards of the hot-path rules that live in this package; each rule, its
// mechanism and its figure are in docs/internals/hot-path.md.

import (
	"reflect"
	"testing"
)

// Event is returned by value for every step of the scan: at most four
// fields, none an array, so the compiler keeps it in registers
// (docs/internals/hot-path.md#four-fields).
func TestEventFitsInRegisters(t *testing.T) {
	typ := reflect.TypeFor[Event]()
	if n := typ.NumField(); n > 4 {
		t.Errorf("Event has %d fields; more than 4 makes every returned Event a copy through memory (docs/internals/hot-path.md#four-fields)", n)
	}
	for i := range typ.NumField() {
		if f := typ.Field(i); f.Type.Kind() == reflect.Array && f.Type.Len() > 1 {
			t.Errorf("Event.%s is an array of %d: it keeps Event in memory", f.Name, f.Type.Len())
		}
	}
}
