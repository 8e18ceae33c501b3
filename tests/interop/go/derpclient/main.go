// derpclient drives Tailscale's own DERP client (tailscale.com/derp/derphttp)
// for Spanza's interop tests and benchmarks. It is the referee: nothing here
// re-implements DERP.
//
//	derpclient [flags]           JSON lines: commands on stdin, events on stdout
//	derpclient loadgen [flags]   N sender->receiver pairs, prints one JSON result
//	derpclient idle [flags]      holds N idle connections until stdin closes
//
// Commands: {"op":"send","to":"nodekey:..","data":"<base64>"}
//           {"op":"send_n","to":"nodekey:..","size":N,"count":C}
//           {"op":"ping"} {"op":"note_preferred","v":true} {"op":"close"}
// Events:   {"ev":"ready","public_key":..} {"ev":"recv","from":..,"len":N,"data":..}
//           {"ev":"peer_gone",..} {"ev":"peer_present",..} {"ev":"pong","ok":..}
//           {"ev":"health",..} {"ev":"restarting"} {"ev":"server_info"} {"ev":"error",..}
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/net/netmon"
	"tailscale.com/types/key"
)

type common struct {
	url      string
	insecure bool
	caFile   string
	meshKey  string
	verbose  bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "DERP URL, http(s)://host:port/derp")
	fs.BoolVar(&c.insecure, "insecure", false, "accept any TLS certificate")
	fs.StringVar(&c.caFile, "ca-file", "", "PEM file of CAs to trust")
	fs.StringVar(&c.meshKey, "mesh-key", "", "mesh key (64 hex digits)")
	fs.BoolVar(&c.verbose, "v", false, "log the client's internals to stderr")
}

func (c *common) newClient(priv key.NodePrivate) (*derphttp.Client, error) {
	logf := func(string, ...any) {}
	if c.verbose {
		logf = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	}
	cl, err := derphttp.NewClient(priv, c.url, logf, netmon.NewStatic())
	if err != nil {
		return nil, err
	}
	if c.insecure || c.caFile != "" {
		// Tailscale's tlsdial refuses InsecureSkipVerify; it takes extra
		// roots instead. "Insecure" trusts whatever certificate the server
		// shows right now (a self-signed test server's own certificate).
		pool := x509.NewCertPool()
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, err
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("no certificates in %s", c.caFile)
			}
		}
		if c.insecure {
			if err := trustServerCert(c.url, pool); err != nil {
				return nil, err
			}
		}
		cl.TLSConfig = &tls.Config{RootCAs: pool}
	}
	if c.meshKey != "" {
		mk, err := key.ParseDERPMesh(c.meshKey)
		if err != nil {
			return nil, err
		}
		cl.MeshKey = mk
		cl.WatchConnectionChanges = true
	}
	return cl, nil
}

func trustServerCert(rawURL string, pool *x509.CertPool) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host,
		&tls.Config{InsecureSkipVerify: true, ServerName: u.Hostname()})
	if err != nil {
		return fmt.Errorf("fetching the server certificate: %w", err)
	}
	defer conn.Close()
	for _, cert := range conn.ConnectionState().PeerCertificates {
		pool.AddCert(cert)
	}
	return nil
}

var outMu sync.Mutex

func emit(v map[string]any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

func fatal(err error) {
	emit(map[string]any{"ev": "fatal", "error": err.Error()})
	os.Exit(1)
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "loadgen":
			loadgen(os.Args[2:])
			return
		case "idle":
			idle(os.Args[2:])
			return
		}
	}
	interactive(os.Args[1:])
}

func interactive(args []string) {
	fs := flag.NewFlagSet("derpclient", flag.ExitOnError)
	var c common
	c.register(fs)
	keyText := fs.String("key", "", "private key, privkey:<hex> (default: a new one)")
	echo := fs.Bool("echo", false, "send every received packet back to its source")
	withData := fs.Bool("data", true, "include packet bytes (base64) in recv events")
	fs.Parse(args)

	priv := key.NewNode()
	if *keyText != "" {
		if err := priv.UnmarshalText([]byte(*keyText)); err != nil {
			fatal(err)
		}
	}
	cl, err := c.newClient(priv)
	if err != nil {
		fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Connect(ctx); err != nil {
		fatal(err)
	}
	emit(map[string]any{"ev": "ready", "public_key": priv.Public().String(), "server_key": cl.ServerPublicKey().String()})

	go func() {
		for {
			m, err := cl.Recv()
			if err != nil {
				emit(map[string]any{"ev": "error", "error": err.Error()})
				time.Sleep(200 * time.Millisecond) // Recv reconnects on the next call
				continue
			}
			switch m := m.(type) {
			case derp.ReceivedPacket:
				sum := sha256.Sum256(m.Data)
				ev := map[string]any{"ev": "recv", "from": m.Source.String(), "len": len(m.Data), "sha256": hex.EncodeToString(sum[:])}
				if *withData {
					ev["data"] = base64.StdEncoding.EncodeToString(m.Data)
				}
				emit(ev)
				if *echo {
					if err := cl.Send(m.Source, append([]byte(nil), m.Data...)); err != nil {
						emit(map[string]any{"ev": "error", "error": err.Error()})
					}
				}
			case derp.PeerGoneMessage:
				emit(map[string]any{"ev": "peer_gone", "peer": m.Peer.String(), "reason": int(m.Reason)})
			case derp.PeerPresentMessage:
				emit(map[string]any{"ev": "peer_present", "key": m.Key.String(), "ipport": m.IPPort.String(), "flags": int(m.Flags)})
			case derp.ServerInfoMessage:
				emit(map[string]any{"ev": "server_info"})
			case derp.HealthMessage:
				emit(map[string]any{"ev": "health", "problem": m.Problem})
			case derp.ServerRestartingMessage:
				emit(map[string]any{"ev": "restarting", "reconnect_in_ms": m.ReconnectIn.Milliseconds(), "try_for_ms": m.TryFor.Milliseconds()})
			case derp.PingMessage:
				emit(map[string]any{"ev": "ping"})
			case derp.KeepAliveMessage:
				emit(map[string]any{"ev": "keepalive"})
			}
		}
	}()

	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<22)
	for sc.Scan() {
		var cmd struct {
			Op    string `json:"op"`
			To    string `json:"to"`
			Data  string `json:"data"`
			Size  int    `json:"size"`
			Count int    `json:"count"`
			V     bool   `json:"v"`
		}
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			emit(map[string]any{"ev": "error", "error": "bad command: " + err.Error()})
			continue
		}
		var dst key.NodePublic
		if cmd.To != "" {
			if err := dst.UnmarshalText([]byte(cmd.To)); err != nil {
				emit(map[string]any{"ev": "error", "error": err.Error()})
				continue
			}
		}
		switch cmd.Op {
		case "send":
			b, err := base64.StdEncoding.DecodeString(cmd.Data)
			if err == nil {
				err = cl.Send(dst, b)
			}
			emit(map[string]any{"ev": "sent", "ok": err == nil, "error": errString(err)})
		case "send_n":
			b := make([]byte, cmd.Size)
			var err error
			for i := 0; i < cmd.Count && err == nil; i++ {
				b[0] = byte(i)
				err = cl.Send(dst, b)
			}
			emit(map[string]any{"ev": "sent", "ok": err == nil, "error": errString(err)})
		case "ping":
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			start := time.Now()
			err := cl.Ping(pctx)
			cancel()
			emit(map[string]any{"ev": "pong", "ok": err == nil, "rtt_ms": float64(time.Since(start).Microseconds()) / 1000, "error": errString(err)})
		case "note_preferred":
			cl.NotePreferred(cmd.V)
			emit(map[string]any{"ev": "noted"})
		case "close":
			cl.Close()
			emit(map[string]any{"ev": "closed"})
			return
		default:
			emit(map[string]any{"ev": "error", "error": "unknown op " + cmd.Op})
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// loadgen: each pair is a sender and a receiver client; senders send
// size-byte packets as fast as Send returns for the duration. Receivers count.
func loadgen(args []string) {
	fs := flag.NewFlagSet("loadgen", flag.ExitOnError)
	var c common
	c.register(fs)
	pairs := fs.Int("pairs", 4, "sender->receiver pairs")
	size := fs.Int("size", 1400, "packet size in bytes")
	dur := fs.Duration("duration", 5*time.Second, "how long to send")
	fs.Parse(args)

	var recvPkts, recvBytes, sentPkts atomic.Int64
	type pair struct{ s, r *derphttp.Client }
	ps := make([]pair, *pairs)
	for i := range ps {
		sk, rk := key.NewNode(), key.NewNode()
		s, err := c.newClient(sk)
		if err != nil {
			fatal(err)
		}
		r, err := c.newClient(rk)
		if err != nil {
			fatal(err)
		}
		if err := s.Connect(context.Background()); err != nil {
			fatal(err)
		}
		if err := r.Connect(context.Background()); err != nil {
			fatal(err)
		}
		ps[i] = pair{s, r}
		go func(r *derphttp.Client) {
			for {
				m, err := r.Recv()
				if err != nil {
					return
				}
				if p, ok := m.(derp.ReceivedPacket); ok {
					recvPkts.Add(1)
					recvBytes.Add(int64(len(p.Data)))
				}
			}
		}(r)
	}
	time.Sleep(200 * time.Millisecond) // receivers registered
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Add(1)
		go func(p pair) {
			defer wg.Done()
			buf := make([]byte, *size)
			dst := p.r.SelfPublicKey()
			for n := 0; time.Now().Before(deadline); n++ {
				buf[0] = byte(n)
				if err := p.s.Send(dst, buf); err != nil {
					return
				}
				sentPkts.Add(1)
			}
		}(ps[i])
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // drain what is in flight
	secs := dur.Seconds()
	emit(map[string]any{
		"pairs": *pairs, "size": *size, "seconds": secs,
		"sent": sentPkts.Load(), "received": recvPkts.Load(),
		"pps": float64(recvPkts.Load()) / secs, "mbps": float64(recvBytes.Load()) / secs / 1e6,
	})
	for _, p := range ps {
		p.s.Close()
		p.r.Close()
	}
}

// idle: n connected clients that do nothing, for memory per connection.
func idle(args []string) {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	var c common
	c.register(fs)
	n := fs.Int("n", 100, "connections")
	fs.Parse(args)
	cls := make([]*derphttp.Client, 0, *n)
	for i := 0; i < *n; i++ {
		cl, err := c.newClient(key.NewNode())
		if err != nil {
			fatal(err)
		}
		if err := cl.Connect(context.Background()); err != nil {
			fatal(fmt.Errorf("connection %d: %w", i, err))
		}
		cls = append(cls, cl)
	}
	emit(map[string]any{"ev": "ready", "n": len(cls)})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "close" {
			break
		}
	}
	for _, cl := range cls {
		cl.Close()
	}
}
