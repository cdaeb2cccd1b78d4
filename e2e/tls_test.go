package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/stompgate/stompgate/config"
	"github.com/stompgate/stompgate/internal/springbroker"
	"github.com/stompgate/stompgate/internal/stomptest"
	"github.com/stompgate/stompgate/proxy"
)

// testPKI is a CA and certificates it signed, generated for one test and
// written to PEM files.
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
	pool   *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stompgate test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.CAFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// leaf issues a server certificate for the given DNS names and IPs and
// returns it with its cert and key files.
func (p *testPKI) leaf(t *testing.T, name string, dns []string, ips []net.IP) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     dns,
		IPAddresses:  ips,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile := p.write(t, name+".pem", "CERTIFICATE", der)
	keyFile := p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return cert, certFile, keyFile
}

// tlsBroker serves the Spring-semantics broker over wss:// with a
// certificate valid only for broker.test (no IP address), so a client must
// be told the server name to verify it.
func tlsBroker(t *testing.T, p *testPKI) string {
	t.Helper()
	cert, _, _ := p.leaf(t, "broker", []string{"broker.test"}, nil)
	b := springbroker.New(springbroker.Config{})
	srv := httptest.NewUnstartedServer(b)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(func() { b.Close(); srv.Close() })
	return "wss://" + srv.Listener.Addr().String()
}

func stompOverTLS(t *testing.T, url string, roots *x509.CertPool) error {
	t.Helper()
	c, resp, err := stomptest.TryDial(t, url, stomptest.Subprotocols("v12.stomp"), stomptest.HandshakeTimeout(3*time.Second),
		stomptest.TLS(&tls.Config{RootCAs: roots}))
	if err != nil {
		if resp != nil {
			return &statusError{resp.StatusCode}
		}
		return err
	}
	defer c.Close()
	c.WriteMessage(websocket.TextMessage, []byte("CONNECT\naccept-version:1.2\nhost:x\n\n\x00"))
	f, err := c.Next(3 * time.Second)
	if err != nil {
		return err
	}
	if f.Command != "CONNECTED" {
		t.Fatalf("want CONNECTED, got %v", f)
	}
	return nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return http.StatusText(e.code) }

// The binary terminates TLS from the client (STOMPGATE_TLS_CERT_FILE/KEY)
// and verifies a wss:// upstream against STOMPGATE_UPSTREAM_CA_FILE under
// STOMPGATE_UPSTREAM_TLS_SERVER_NAME.
func TestBinaryTLSBothSides(t *testing.T) {
	p := newTestPKI(t)
	upstream := tlsBroker(t, p)
	_, certFile, keyFile := p.leaf(t, "gate", nil, []net.IP{net.IPv4(127, 0, 0, 1)})
	bin := buildStompgate(t)
	addr, adminAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = []string{
		"STOMPGATE_UPSTREAM_URL=" + upstream,
		"STOMPGATE_UPSTREAM_CA_FILE=" + p.CAFile,
		"STOMPGATE_UPSTREAM_TLS_SERVER_NAME=broker.test",
		"STOMPGATE_TLS_CERT_FILE=" + certFile,
		"STOMPGATE_TLS_KEY_FILE=" + keyFile,
		"STOMPGATE_LISTEN_ADDR=" + addr,
		"STOMPGATE_ADMIN_ADDR=" + adminAddr,
		"STOMPGATE_SHUTDOWN_DELAY=0s",
		"STOMPGATE_DRAIN_PERIOD=0s",
		"STOMPGATE_SHUTDOWN_TIMEOUT=2s",
	}
	var logs stomptest.LockedBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntil(t, 5*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if err := stompOverTLS(t, "wss://"+addr+"/ws", p.pool); err != nil {
		t.Fatalf("STOMP over wss through stompgate: %v\n%s", err, logs.String())
	}
	// A plain ws:// client cannot talk to the TLS listener.
	if _, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil); err == nil {
		t.Error("plain ws:// handshake succeeded on the TLS listener")
	}
}

// Without the server name the broker's certificate does not verify: 502,
// and the log says why; the explicit insecure switch skips verification.
func TestUpstreamTLSVerification(t *testing.T) {
	p := newTestPKI(t)
	upstream := tlsBroker(t, p)
	for _, tc := range []struct {
		name string
		env  []string
		want int // 0: the session works
	}{
		{"ca and server name", []string{"STOMPGATE_UPSTREAM_CA_FILE=" + p.CAFile, "STOMPGATE_UPSTREAM_TLS_SERVER_NAME=broker.test"}, 0},
		{"ca without server name", []string{"STOMPGATE_UPSTREAM_CA_FILE=" + p.CAFile}, http.StatusBadGateway},
		{"system roots", nil, http.StatusBadGateway},
		{"insecure", []string{"STOMPGATE_UPSTREAM_TLS_INSECURE_SKIP_VERIFY=true"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(append([]string{"STOMPGATE_UPSTREAM_URL=" + upstream}, tc.env...))
			if err != nil {
				t.Fatal(err)
			}
			tc2, err := cfg.UpstreamTLSConfig()
			if err != nil {
				t.Fatal(err)
			}
			g := startGate(t, upstream, func(o *proxy.Options) { o.TLSClientConfig = tc2 })
			err = stompOverTLS(t, g.url("/ws"), nil)
			var se *statusError
			switch {
			case tc.want == 0 && err != nil:
				t.Fatalf("session failed: %v", err)
			case tc.want != 0 && !(errors.As(err, &se) && se.code == tc.want):
				t.Fatalf("got %v, want HTTP %d", err, tc.want)
			}
		})
	}
}
