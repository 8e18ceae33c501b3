// goref: the Go reference for Spanza's relay benchmarks. Two WireGuard peers
// (wireguard-go) with gVisor's netstack (golang.zx2c4.com/wireguard/tun/netstack)
// in one process, their datagrams carried over a DERP relay by Tailscale's
// derphttp client; peer .1 serves a body over HTTP, peer .2 GETs it. Prints
// one JSON line: {"MB/s":..,"stall_ms":..,"bytes":..}, where stall_ms is the
// longest gap between two reads of the body after its first byte.
//
// -loss and -delay impair what the serving peer sends to the relay (its
// datagrams are dropped with that probability, from a PRNG seeded with
// -seed, and the others held back by the delay, in order), as
// `peer.impair(loss=, delay=, seed=, direction="out")` does to a Spanza
// peer's relay link in bench/e2e/race.py.
//
//	goref -url https://127.0.0.1:PORT/derp -insecure -mib 64 [-loss 0.05 -delay 20ms -seed 1]
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"
)

const mtu = 1420

// derpEndpoint: the one peer behind the relay.
type derpEndpoint struct{}

func (derpEndpoint) ClearSrc()           {}
func (derpEndpoint) SrcToString() string { return "" }
func (derpEndpoint) DstToString() string { return "derp" }
func (derpEndpoint) DstToBytes() []byte  { return []byte("derp") }
func (derpEndpoint) DstIP() netip.Addr   { return netip.Addr{} }
func (derpEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// impairer drops (seeded PRNG) and delays (a FIFO delay line) the datagrams
// a bind sends.
type impairer struct {
	loss  float64
	delay time.Duration
	send  func([]byte) error
	mu    sync.Mutex
	rng   *mrand.Rand
	line  chan delayed
}

type delayed struct {
	due time.Time
	buf []byte
}

func newImpairer(loss float64, delay time.Duration, seed int64, send func([]byte) error) *impairer {
	im := &impairer{loss: loss, delay: delay, send: send, rng: mrand.New(mrand.NewSource(seed)),
		line: make(chan delayed, 1<<16)}
	if delay > 0 {
		go im.run()
	}
	return im
}

func (im *impairer) input(buf []byte) error {
	im.mu.Lock()
	drop := im.rng.Float64() < im.loss
	im.mu.Unlock()
	if drop {
		return nil
	}
	if im.delay == 0 {
		return im.send(buf)
	}
	select {
	case im.line <- delayed{time.Now().Add(im.delay), append([]byte(nil), buf...)}:
	default: // the delay line is full: lost, as Spanza's overflows are
	}
	return nil
}

func (im *impairer) run() {
	for d := range im.line {
		if w := time.Until(d.due); w > 0 {
			time.Sleep(w)
		}
		im.send(d.buf)
	}
}

// derpBind carries a device's datagrams to one peer's DERP key.
type derpBind struct {
	c    *derphttp.Client
	peer key.NodePublic
	imp  *impairer // nil: not impaired
	mu   sync.Mutex
	open bool
}

func (b *derpBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	b.open = true
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			m, err := b.c.Recv()
			if err != nil {
				return 0, net.ErrClosed
			}
			if p, ok := m.(derp.ReceivedPacket); ok {
				sizes[0] = copy(bufs[0], p.Data)
				eps[0] = derpEndpoint{}
				return 1, nil
			}
		}
	}
	return []conn.ReceiveFunc{recv}, port, nil
}

func (b *derpBind) Close() error {
	b.mu.Lock()
	b.open = false
	b.mu.Unlock()
	return nil
}
func (b *derpBind) SetMark(uint32) error                        { return nil }
func (b *derpBind) ParseEndpoint(string) (conn.Endpoint, error) { return derpEndpoint{}, nil }
func (b *derpBind) BatchSize() int                              { return 1 }
func (b *derpBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	for _, buf := range bufs {
		var err error
		if b.imp != nil {
			err = b.imp.input(buf)
		} else {
			err = b.c.Send(b.peer, buf)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func derpClient(priv key.NodePrivate, rawURL string, insecure bool) (*derphttp.Client, error) {
	c, err := derphttp.NewClient(priv, rawURL, func(string, ...any) {}, netmon.NewStatic())
	if err != nil {
		return nil, err
	}
	if insecure {
		// tlsdial refuses InsecureSkipVerify: trust the certificate the
		// (self-signed, loopback) server shows now.
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		tc, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		for _, cert := range tc.ConnectionState().PeerCertificates {
			pool.AddCert(cert)
		}
		tc.Close()
		c.TLSConfig = &tls.Config{RootCAs: pool}
	}
	return c, c.Connect(context.Background())
}

type peer struct {
	wgPriv, wgPub [32]byte
	derpPriv      key.NodePrivate
	addr          netip.Addr
	dev           *device.Device
	net           *netstack.Net
}

func newPeer(addr string) *peer {
	p := &peer{addr: netip.MustParseAddr(addr), derpPriv: key.NewNode()}
	rand.Read(p.wgPriv[:])
	pub, _ := curve25519.X25519(p.wgPriv[:], curve25519.Basepoint)
	copy(p.wgPub[:], pub)
	return p
}

func (p *peer) up(rawURL string, insecure bool, other *peer, imp *impairment) error {
	c, err := derpClient(p.derpPriv, rawURL, insecure)
	if err != nil {
		return fmt.Errorf("derp: %w", err)
	}
	tun, tnet, err := netstack.CreateNetTUN([]netip.Addr{p.addr}, nil, mtu)
	if err != nil {
		return err
	}
	p.net = tnet
	bind := &derpBind{c: c, peer: other.derpPriv.Public()}
	if imp != nil {
		dst := other.derpPriv.Public()
		bind.imp = newImpairer(imp.loss, imp.delay, imp.seed, func(buf []byte) error { return c.Send(dst, buf) })
	}
	p.dev = device.NewDevice(tun, bind, device.NewLogger(device.LogLevelError, ""))
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nendpoint=derp\nallowed_ip=%s/32\n",
		hex.EncodeToString(p.wgPriv[:]), hex.EncodeToString(other.wgPub[:]), other.addr)
	if err := p.dev.IpcSet(cfg); err != nil {
		return err
	}
	return p.dev.Up()
}

func main() {
	rawURL := flag.String("url", "", "DERP URL, http(s)://host:port/derp")
	insecure := flag.Bool("insecure", false, "trust the server's self-signed certificate")
	mib := flag.Int("mib", 64, "body size in MiB")
	loss := flag.Float64("loss", 0, "probability that the serving peer's datagram to the relay is lost")
	delay := flag.Duration("delay", 0, "delay of the serving peer's datagrams to the relay")
	seed := flag.Int64("seed", 1, "seed of the loss")
	flag.Parse()
	var imp *impairment
	if *loss > 0 || *delay > 0 {
		imp = &impairment{loss: *loss, delay: *delay, seed: *seed}
	}
	if err := run(*rawURL, *insecure, *mib, imp); err != nil {
		fmt.Fprintln(os.Stderr, "goref:", err)
		os.Exit(1)
	}
}

// impairment: what the serving peer's bind does to its datagrams.
type impairment struct {
	loss  float64
	delay time.Duration
	seed  int64
}

func run(rawURL string, insecure bool, mib int, imp *impairment) error {
	a, b := newPeer("192.168.4.1"), newPeer("192.168.4.2")
	if err := a.up(rawURL, insecure, b, imp); err != nil {
		return err
	}
	if err := b.up(rawURL, insecure, a, nil); err != nil {
		return err
	}
	body := make([]byte, mib<<20)
	rand.Read(body[:1<<20])
	for i := 1; i < mib; i++ {
		copy(body[i<<20:], body[:1<<20])
	}
	want := sha256.Sum256(body)
	ln, err := a.net.ListenTCP(&net.TCPAddr{Port: 8080})
	if err != nil {
		return err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	client := &http.Client{Transport: &http.Transport{DialContext: b.net.DialContext}, Timeout: 300 * time.Second}
	// the first request waits for the handshake
	var resp *http.Response
	for i := 0; ; i++ {
		resp, err = client.Get("http://192.168.4.1:8080/")
		if err == nil || i == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	resp.Body.Close()
	t0 := time.Now()
	resp, err = client.Get("http://192.168.4.1:8080/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	buf := make([]byte, 256<<10)
	var got int
	var stall time.Duration
	var last time.Time
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			now := time.Now()
			if !last.IsZero() && now.Sub(last) > stall {
				stall = now.Sub(last)
			}
			last = now
			h.Write(buf[:n])
			got += n
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	secs := time.Since(t0).Seconds()
	if got != len(body) || string(h.Sum(nil)) != string(want[:]) {
		return fmt.Errorf("body: %d of %d bytes or corrupted", got, len(body))
	}
	out, _ := json.Marshal(map[string]any{"MB/s": float64(got) / secs / 1e6,
		"stall_ms": float64(stall.Microseconds()) / 1e3, "bytes": got})
	fmt.Println(string(out))
	return nil
}
