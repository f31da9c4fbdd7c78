package tcp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/distkit/distkit/consensus"
	"pgregory.net/rapid"
)

func genMessage(from uint64, tos ...uint64) *rapid.Generator[consensus.Message] {
	return rapid.Custom(func(t *rapid.T) consensus.Message {
		return consensus.Message{
			From:    from,
			To:      rapid.SampledFrom(tos).Draw(t, "to"),
			Kind:    rapid.SampledFrom([]consensus.MessageKind{consensus.KindOther, consensus.KindAppend, consensus.KindHeartbeat}).Draw(t, "kind"),
			Payload: rapid.SliceOfN(rapid.Byte(), 0, 3000).Draw(t, "payload"),
		}
	})
}

// chunkReader returns its data in reads of the given sizes (cycled), so
// frames straddle reads in every possible way.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.data), r.sizes[r.i%len(r.sizes)])
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// Whatever the read boundaries, the decoder returns exactly the encoded
// messages, in order, in batches of at most MaxBatchMessages.
func TestPropFramesRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		msgs := rapid.SliceOfN(genMessage(1, 2), 0, 40).Draw(t, "msgs")
		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		for _, m := range msgs {
			if _, err := writeMessage(w, m); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		sizes := rapid.SliceOfN(rapid.IntRange(1, 5000), 1, 8).Draw(t, "read sizes")
		rec := newRecorder()
		tr := fuzzTransport(rec)
		tr.cfg.MaxBatchMessages = rapid.IntRange(1, 8).Draw(t, "max batch")
		err := tr.readMessages(nopDeadlines{}, bufio.NewReaderSize(&chunkReader{data: buf.Bytes(), sizes: sizes}, 16), 1)
		if err != io.EOF {
			t.Fatalf("end of stream: %v, want io.EOF", err)
		}
		got := rec.received()
		if len(got) != len(msgs) {
			t.Fatalf("decoded %d messages, want %d", len(got), len(msgs))
		}
		for i := range msgs {
			if got[i].From != 1 || got[i].To != 2 || got[i].Kind != msgs[i].Kind || !bytes.Equal(got[i].Payload, msgs[i].Payload) {
				t.Fatalf("message %d: got %+v, want %+v", i, got[i], msgs[i])
			}
		}
		for _, n := range rec.batches {
			if n < 1 || n > tr.cfg.MaxBatchMessages {
				t.Fatalf("batch of %d (max %d)", n, tr.cfg.MaxBatchMessages)
			}
		}
	})
}

// Over live streams, every message of any sequence of Send calls, to
// interleaved peers, arrives once, unaltered, in per-peer order.
func TestPropStreamsDeliverInOrder(t *testing.T) {
	a, _ := newTransport(t, 1, nil)
	b, recB := newTransport(t, 2, nil)
	c, recC := newTransport(t, 3, nil)
	a.AddPeer(2, b.Addr().String())
	a.AddPeer(3, c.Addr().String())
	waitConnected(t, a, 2)
	waitConnected(t, a, 3)
	recs := map[uint64]*recorder{2: recB, 3: recC}
	round := 0
	rapid.Check(t, func(rt *rapid.T) {
		round++
		calls := rapid.SliceOfN(rapid.SliceOfN(genMessage(1, 2, 3), 1, 30), 1, 8).Draw(rt, "sends")
		want := map[uint64][]consensus.Message{}
		for _, call := range calls {
			for i := range call {
				// Tag each message with its round so leftovers cannot match.
				call[i].Payload = append(fmt.Appendf(nil, "%d:", round), call[i].Payload...)
				want[call[i].To] = append(want[call[i].To], call[i])
			}
		}
		before := map[uint64]int{2: len(recB.received()), 3: len(recC.received())}
		for _, call := range calls {
			a.Send(call)
		}
		for id, r := range recs {
			r.waitFor(t, fmt.Sprintf("messages to %d", id), func() bool { return len(r.received()) >= before[id]+len(want[id]) })
			got := r.received()[before[id]:]
			if len(got) != len(want[id]) {
				rt.Fatalf("member %d got %d messages, want %d", id, len(got), len(want[id]))
			}
			for i, m := range want[id] {
				if got[i].Kind != m.Kind || !bytes.Equal(got[i].Payload, m.Payload) || got[i].From != 1 || got[i].To != id {
					rt.Fatalf("member %d message %d differs", id, i)
				}
			}
		}
		for id := range recs {
			if d := a.Stats().Peers[id].Dropped; d != 0 {
				rt.Fatalf("%d messages to %d dropped on a healthy stream", d, id)
			}
		}
	})
}
