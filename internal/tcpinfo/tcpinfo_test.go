package tcpinfo

import (
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stompgate/stompgate/internal/wstest"
)

// PeerSilence counts the bytes waiting unread and the time since they
// arrived, read or not; it knows nothing of a connection that is not a
// socket.
func TestPeerSilence(t *testing.T) {
	nc, peer := wstest.TCPPair(t)
	if _, _, ok := PeerSilence(nc); !ok {
		if runtime.GOOS == "linux" {
			t.Fatal("PeerSilence unknown on a Linux TCP socket")
		}
		t.Skip("TCP_INFO and SIOCINQ are Linux's")
	}
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	var unread int
	for deadline := time.Now().Add(5 * time.Second); unread != 5; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes unread, want 5", unread)
		}
		_, unread, _ = PeerSilence(nc)
	}
	arrived := time.Now()
	time.Sleep(200 * time.Millisecond)
	d, _, _ := PeerSilence(nc)
	if waited := time.Since(arrived); d < waited-50*time.Millisecond || d > waited+50*time.Millisecond {
		t.Errorf("silence %v, %v after the bytes arrived", d, waited)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, ok := PeerSilence(a); ok {
		t.Error("PeerSilence known on a net.Pipe")
	}
}

// SendQueue sees what a Unix stream socket's peer has not read yet.
func TestSendQueue(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SIOCOUTQ is Linux's")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, r := os.NewFile(uintptr(fds[0]), "w"), os.NewFile(uintptr(fds[1]), "r")
	defer w.Close()
	defer r.Close()
	queued := func() int {
		n, ok := SendQueue(w.Fd())
		if !ok {
			t.Fatal("SendQueue unknown on a Unix socket")
		}
		return n
	}
	if n := queued(); n != 0 {
		t.Fatalf("SendQueue %d before any write", n)
	}
	if _, err := w.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if n := queued(); n == 0 {
		t.Fatal("SendQueue 0 with 1000 bytes unread by the peer")
	}
	if n, ok := ReceiveQueue(r.Fd()); !ok || n != 1000 {
		t.Fatalf("ReceiveQueue %d, %v; want 1000", n, ok)
	}
	if _, err := r.Read(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if n := queued(); n != 0 {
		t.Fatalf("SendQueue %d after the peer read everything", n)
	}
}
