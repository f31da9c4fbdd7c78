package consensustest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
)

// recorder is a consensus.Handler that records what arrives.
type recorder struct {
	mu          sync.Mutex
	got         []consensus.Message
	unreachable []uint64
	snap        []byte
	arrived     chan struct{}
}

func newRecorder() *recorder { return &recorder{arrived: make(chan struct{}, 1024)} }

func (r *recorder) HandleMessages(msgs []consensus.Message) {
	r.mu.Lock()
	r.got = append(r.got, msgs...)
	r.mu.Unlock()
	for range msgs {
		r.arrived <- struct{}{}
	}
}

func (r *recorder) HandleSnapshot(ctx context.Context, m consensus.Message, body io.Reader) error {
	b, err := io.ReadAll(body)
	r.mu.Lock()
	r.snap = b
	r.mu.Unlock()
	return err
}

func (r *recorder) Unreachable(id uint64) {
	r.mu.Lock()
	r.unreachable = append(r.unreachable, id)
	r.mu.Unlock()
}

func (r *recorder) payloads() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, m := range r.got {
		out = append(out, string(m.Payload))
	}
	return out
}

func attach(t *testing.T, n *consensustest.Network, id uint64) (consensus.Transport, *recorder) {
	t.Helper()
	tr := n.Transport(id)
	r := newRecorder()
	if err := tr.Start(r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr, r
}

func waitN(t *testing.T, r *recorder, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for range n {
		select {
		case <-r.arrived:
		case <-timeout:
			t.Fatalf("timed out waiting for %d messages", n)
		}
	}
}

func msgs(from, to uint64, payloads ...string) []consensus.Message {
	var out []consensus.Message
	for _, p := range payloads {
		out = append(out, consensus.Message{From: from, To: to, Payload: []byte(p)})
	}
	return out
}

func TestNetworkDeliversInOrderAndPartitions(t *testing.T) {
	n := consensustest.NewNetwork(1)
	t1, r1 := attach(t, n, 1)
	_, r2 := attach(t, n, 2)
	t1.Send(msgs(1, 2, "a", "b", "c"))
	waitN(t, r2, 3)
	if got := r2.payloads(); len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("delivered %v, want a b c in order", got)
	}
	n.Partition([]uint64{1}, []uint64{2})
	t1.Send(msgs(1, 2, "lost"))
	if err := t1.SendSnapshot(context.Background(), consensus.Message{From: 1, To: 2}, bytes.NewReader([]byte("s"))); !errors.Is(err, consensustest.ErrUnreachable) {
		t.Fatalf("snapshot across a partition: %v", err)
	}
	n.Heal()
	t1.Send(msgs(1, 2, "d"))
	waitN(t, r2, 1)
	if got := r2.payloads(); got[len(got)-1] != "d" || len(got) != 4 {
		t.Fatalf("after heal: %v", got)
	}
	r1.mu.Lock()
	if len(r1.unreachable) == 0 || r1.unreachable[0] != 2 {
		t.Fatalf("sender not told peer 2 was unreachable: %v", r1.unreachable)
	}
	r1.mu.Unlock()
	if st := n.Stats(); st.Dropped != 1 || st.Delivered != 4 {
		t.Fatalf("stats %+v", st)
	}
}

func TestNetworkSnapshotStreams(t *testing.T) {
	n := consensustest.NewNetwork(2)
	t1, _ := attach(t, n, 1)
	_, r2 := attach(t, n, 2)
	body := bytes.Repeat([]byte("0123456789"), 20000) // several chunks
	if err := t1.SendSnapshot(context.Background(), consensus.Message{From: 1, To: 2, Kind: consensus.KindSnapshot}, bytes.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	r2.mu.Lock()
	defer r2.mu.Unlock()
	if !bytes.Equal(r2.snap, body) {
		t.Fatalf("snapshot of %d bytes arrived as %d", len(body), len(r2.snap))
	}
}

// The same seed and the same sends make the same fault decisions.
func TestNetworkFaultsDeterministic(t *testing.T) {
	run := func(seed uint64) consensustest.NetStats {
		n := consensustest.NewNetwork(seed)
		n.SetFaults(consensustest.Faults{Drop: 0.3, Duplicate: 0.3, Reorder: 0.5, MaxDelay: time.Millisecond})
		t1, _ := attach(t, n, 1)
		_, r2 := attach(t, n, 2)
		for range 200 {
			t1.Send(msgs(1, 2, "m"))
		}
		st := n.Stats()
		waitN(t, r2, int(st.Sent-st.Dropped+st.Duplicated))
		return n.Stats()
	}
	a, b, c := run(7), run(7), run(8)
	if a != b {
		t.Fatalf("same seed, different faults: %+v vs %+v", a, b)
	}
	if a == c {
		t.Fatalf("different seeds, identical faults: %+v", a)
	}
	if a.Dropped == 0 || a.Duplicated == 0 || a.Delayed == 0 {
		t.Fatalf("faults not applied: %+v", a)
	}
}

func TestKVSnapshotRoundTrip(t *testing.T) {
	kv := consensustest.NewKV()
	cmds := []consensus.Command{
		{Index: 1, Data: consensustest.PutCommand("a", "1")},
		{Index: 2, Data: consensustest.AppendCommand("a", "2")},
		{Index: 3, Data: []byte("bad")},
	}
	if err := kv.Apply(cmds); err != nil {
		t.Fatal(err)
	}
	if string(cmds[1].Result) != "12" || !errors.Is(cmds[2].Err, consensustest.ErrBadCommand) {
		t.Fatalf("results %q, %v", cmds[1].Result, cmds[2].Err)
	}
	if err := kv.Apply([]consensus.Command{{Index: 3, Data: consensustest.PutCommand("b", "x")}}); err == nil {
		t.Fatal("KV accepted an index twice")
	}
	sw, _ := kv.Snapshot()
	var buf bytes.Buffer
	if _, err := sw.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sw.Release()
	kv2 := consensustest.NewKV()
	if err := kv2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if v, _ := kv2.Get("a"); v != "12" || kv2.Len() != 1 {
		t.Fatalf("restored %v", kv2.Data())
	}
	if err := kv2.Restore(bytes.NewReader([]byte{0x05, 0x03})); err == nil {
		t.Fatal("Restore accepted a truncated snapshot")
	}
}
