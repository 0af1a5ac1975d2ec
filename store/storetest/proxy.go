package storetest

import (
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy in front of a database server that a test can take down and bring back,
// to play a database that goes away: Cut refuses connections, Stall plays a network partition.
type Proxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	down    bool // refuse: close what is open, close what arrives
	stalled bool // partition: keep everything open, forward nothing
	conns   map[net.Conn]struct{}
	// blocked counts what the outage kept from the database: connections refused while down,
	// reads dropped or connections held while stalled.
	blocked atomic.Int64
}

// Blocked is how many times an outage has kept traffic from the database so far, so that a test
// can tell that an outage has reached its clients.
func (p *Proxy) Blocked() int64 { return p.blocked.Load() }

// NewProxy proxies to the host of dbURL and returns the proxy and dbURL rewritten to go through it.
func NewProxy(t testing.TB, dbURL string) (*Proxy, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: u.Host, conns: map[net.Conn]struct{}{}}
	go p.accept()
	t.Cleanup(func() {
		_ = ln.Close()
		p.Cut()
	})
	u.Host = ln.Addr().String()
	return p, u.String()
}

func (p *Proxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down, stalled := p.down, p.stalled
		if stalled {
			p.conns[client] = struct{}{} // held open, never answered
		}
		p.mu.Unlock()
		if down {
			_ = client.Close()
		}
		if down || stalled {
			p.blocked.Add(1)
			continue
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		go p.pipe(client, server)
		go p.pipe(server, client)
	}
}

// pipe copies src to dst, dropping what arrives while the proxy is stalled.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.isStalled() {
				p.blocked.Add(1)
			} else if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) isStalled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stalled
}

// Cut drops every open connection and refuses new ones until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	p.closeAllLocked()
}

// Stall stops forwarding without closing anything, until Restore.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stalled = true
}

// Restore resets every connection that lived through a stall and forwards again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled {
		p.closeAllLocked()
	}
	p.down, p.stalled = false, false
}

func (p *Proxy) closeAllLocked() {
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}
