package proxy

import (
	"bytes"
	"net/http"
	"time"
)

// sockjsAnotherConnection is the close frame the library answers a
// receiving request with while the session still has a receiver.
const sockjsAnotherConnection = `c[2010,"Another connection still open"]`

// sockjsPollRetryMax bounds the wait between two attempts of a poll the
// library refused (1, 2, 4, … ms: about 60 ms in all).
const sockjsPollRetryMax = 32 * time.Millisecond

// servePoll serves a polling request (xhr, jsonp) through the library,
// again when the library refused it as a second connection. The library
// lets go of a poll's receiver in a goroutine of its own once the response
// is done, so a client that polls again at once (as sockjs-client does)
// can find the previous poll still attached and get c[2010,…], which ends
// its session. refusal is that answer as this transport writes it; a
// client that really has two polls open still gets it, after the retries.
func (e *sockjsEndpoint) servePoll(w http.ResponseWriter, r *http.Request, refusal []byte) {
	for wait := time.Millisecond; ; wait *= 2 {
		pw := &pollWriter{w: w, refusal: refusal}
		e.lib.ServeHTTP(pw, r)
		if !pw.refused {
			pw.decide()
			return
		}
		if wait > sockjsPollRetryMax {
			pw.decide()
			_, _ = w.Write(refusal)
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
}

// pollWriter holds a polling response back until its first write, to
// tell the library's refusal (swallowed, refused set) from an answer
// (passed on).
type pollWriter struct {
	w       http.ResponseWriter
	refusal []byte
	status  int // a WriteHeader held back
	decided bool
	refused bool
}

func (p *pollWriter) Header() http.Header { return p.w.Header() }

func (p *pollWriter) WriteHeader(code int) {
	if p.decided {
		p.w.WriteHeader(code)
		return
	}
	p.status = code
}

func (p *pollWriter) Write(b []byte) (int, error) {
	if !p.decided {
		if !p.refused && bytes.Equal(b, p.refusal) {
			p.refused = true
			return len(b), nil
		}
		p.decide()
	}
	return p.w.Write(b)
}

// Flush is the library's (it asserts http.Flusher); before the first
// write there is nothing to flush.
func (p *pollWriter) Flush() {
	if p.decided {
		if f, ok := p.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// decide passes the response on from now on, with the status held back.
func (p *pollWriter) decide() {
	if p.decided {
		return
	}
	p.decided = true
	if p.status != 0 {
		p.w.WriteHeader(p.status)
	}
}
