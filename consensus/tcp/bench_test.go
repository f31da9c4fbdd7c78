package tcp

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"

	"github.com/distkit/distkit/consensus"
)

// counter counts delivered messages.
type counter struct {
	n    atomic.Int64
	wake chan struct{}
}

func (c *counter) HandleMessages(msgs []consensus.Message) {
	c.n.Add(int64(len(msgs)))
	signal(c.wake)
}
func (c *counter) HandleSnapshot(context.Context, consensus.Message, io.Reader) error { return nil }
func (c *counter) Unreachable(uint64)                                                 {}

// BenchmarkStream measures messages per second over one loopback stream,
// the way a leader sends: Send calls of 64 messages, at most 1024 in
// flight. "batched" is the transport as shipped (everything queued goes
// out in one write); "write-per-message" flushes after every message, the
// baseline without batching.
func BenchmarkStream(b *testing.B) {
	for _, size := range []int{64, 256} {
		for _, mode := range []struct {
			name string
			each bool
		}{{"batched", false}, {"write-per-message", true}} {
			b.Run(fmt.Sprintf("mode=%s/size=%d", mode.name, size), func(b *testing.B) {
				benchStream(b, size, mode.each)
			})
		}
	}
}

func benchStream(b *testing.B, size int, flushEach bool) {
	mk := func(id uint64, h consensus.Handler) *Transport {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		tr, err := New(Config{ID: id, Listener: ln, Secret: benchSecret})
		if err != nil {
			b.Fatal(err)
		}
		tr.flushEach = flushEach
		if err := tr.Start(h); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { tr.Close() })
		return tr
	}
	recv := &counter{wake: make(chan struct{}, 1)}
	a := mk(1, &counter{wake: make(chan struct{}, 1)})
	dst := mk(2, recv)
	a.AddPeer(2, dst.Addr().String())
	waitConnected(b, a, 2)

	const perSend, window = 64, 1024
	payload := make([]byte, size)
	var sent int64
	batch := make([]consensus.Message, 0, perSend)
	send := func() {
		for sent-recv.n.Load() > window {
			<-recv.wake
		}
		a.Send(batch)
		batch = make([]consensus.Message, 0, perSend) // Send owns the slice
	}
	b.ReportAllocs()
	b.SetBytes(int64(size))
	for b.Loop() {
		batch = append(batch, consensus.Message{From: 1, To: 2, Kind: consensus.KindAppend, Payload: payload})
		sent++
		if len(batch) == perSend {
			send()
		}
	}
	if len(batch) > 0 {
		send()
	}
	for recv.n.Load() < sent {
		<-recv.wake
	}
	b.StopTimer()
	if st := a.Stats().Peers[2]; st.Dropped != 0 {
		b.Fatalf("dropped %d messages", st.Dropped)
	}
	b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "msgs/s")
	st := a.Stats().Peers[2]
	writes := st.Batches
	if flushEach {
		writes = st.Sent
	}
	b.ReportMetric(float64(st.Sent)/float64(max(writes, 1)), "msgs/write")
}

// echo answers every message it receives on its own transport.
type echo struct {
	tr  *Transport
	got chan struct{}
}

func (e *echo) HandleMessages(msgs []consensus.Message) {
	if e.got != nil {
		for range msgs {
			e.got <- struct{}{}
		}
		return
	}
	out := make([]consensus.Message, len(msgs))
	for i, m := range msgs {
		out[i] = consensus.Message{From: m.To, To: m.From, Kind: m.Kind, Payload: append([]byte(nil), m.Payload...)}
	}
	e.tr.Send(out)
}
func (e *echo) HandleSnapshot(context.Context, consensus.Message, io.Reader) error { return nil }
func (e *echo) Unreachable(uint64)                                                 {}

// BenchmarkRoundTrip measures the latency of one message and its answer
// through two transports (the path of every raft append and its
// response), beside a bare TCP ping-pong of the same size in the same run.
func BenchmarkRoundTrip(b *testing.B) {
	const size = 64
	b.Run("impl=transport", func(b *testing.B) {
		mk := func(id uint64, e *echo) *Transport {
			tr, err := New(Config{ID: id, ListenAddr: "127.0.0.1:0", Secret: benchSecret})
			if err != nil {
				b.Fatal(err)
			}
			e.tr = tr
			if err := tr.Start(e); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { tr.Close() })
			return tr
		}
		client := &echo{got: make(chan struct{}, 1)}
		a, srv := mk(1, client), mk(2, &echo{})
		a.AddPeer(2, srv.Addr().String())
		srv.AddPeer(1, a.Addr().String())
		waitConnected(b, a, 2)
		waitConnected(b, srv, 1)
		payload := make([]byte, size)
		b.ReportAllocs()
		for b.Loop() {
			a.Send([]consensus.Message{{From: 1, To: 2, Kind: consensus.KindAppend, Payload: payload}})
			<-client.got
		}
	})
	b.Run("impl=bare-tcp", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, size)
			for {
				if _, err := io.ReadFull(c, buf); err != nil {
					return
				}
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, size)
		b.ReportAllocs()
		for b.Loop() {
			c.Write(buf)
			io.ReadFull(c, buf)
		}
		c.Close()
		<-done
	})
}

// benchSecret authenticates the benchmarks' plain-TCP transports.
var benchSecret = []byte("benchmark secret, 32 bytes long.")
