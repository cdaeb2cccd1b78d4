package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strings"
)

// hopHeaders are meaningful only for one connection and are never forwarded
// (RFC 9110 §7.6.1, the same list httputil.ReverseProxy uses).
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// endToEnd returns a copy of h without hop-by-hop headers, without the headers
// named in Connection, and without any Sec-WebSocket-* header: the WebSocket
// handshake is hop-by-hop too, each leg negotiates its own key, version and
// extensions. Subprotocols are forwarded separately, on purpose.
func endToEnd(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		out[k] = append([]string(nil), v...)
	}
	for _, f := range h["Connection"] {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				out.Del(name)
			}
		}
	}
	for _, k := range hopHeaders {
		out.Del(k)
	}
	for k := range out {
		if strings.HasPrefix(k, "Sec-Websocket-") {
			delete(out, k)
		}
	}
	out.Del("Content-Length")
	return out
}

// remoteAddr parses the peer address of r; the zero Addr when unparsable.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// setForwarded writes X-Forwarded-For/-Proto/-Host into out. Incoming values
// are kept (and X-Forwarded-For extended) only when the immediate peer is a
// trusted proxy; anyone else could forge them.
func setForwarded(out, in http.Header, r *http.Request, trusted bool) {
	peer := remoteAddr(r)
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	if !trusted {
		out.Del("Forwarded")
		out.Del("X-Forwarded-For")
		out.Del("X-Forwarded-Proto")
		out.Del("X-Forwarded-Host")
	}
	if peer.IsValid() {
		if prior := in.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
			out.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+peer.String())
		} else {
			out.Set("X-Forwarded-For", peer.String())
		}
	}
	if !trusted || out.Get("X-Forwarded-Proto") == "" {
		out.Set("X-Forwarded-Proto", proto)
	}
	if !trusted || out.Get("X-Forwarded-Host") == "" {
		out.Set("X-Forwarded-Host", r.Host)
	}
}

// targetURL joins the client's path and query under the upstream base URL,
// with the same rules as httputil.NewSingleHostReverseProxy.
func targetURL(base *url.URL, in *url.URL) *url.URL {
	u := *base
	u.Path, u.RawPath = joinURLPath(base, in)
	switch {
	case base.RawQuery == "":
		u.RawQuery = in.RawQuery
	case in.RawQuery == "":
		u.RawQuery = base.RawQuery
	default:
		u.RawQuery = base.RawQuery + "&" + in.RawQuery
	}
	u.Fragment = ""
	return &u
}

func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// httpScheme maps a WebSocket URL scheme to the HTTP one used for plain
// requests passed through to the same upstream.
func httpScheme(ws string) string {
	if ws == "wss" {
		return "https"
	}
	return "http"
}
