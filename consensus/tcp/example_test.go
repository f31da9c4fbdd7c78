package tcp_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/distkit/distkit/consensus"
	"github.com/distkit/distkit/consensus/consensustest"
	"github.com/distkit/distkit/consensus/tcp"
)

// printer is a consensus.Handler that prints what it receives. A real
// member's handler is supplied by consensus.Start.
type printer struct{ done chan struct{} }

func (p printer) HandleMessages(msgs []consensus.Message) {
	for _, m := range msgs {
		fmt.Printf("member %d got %q from member %d\n", m.To, m.Payload, m.From)
		if string(m.Payload) == "bye" {
			close(p.done)
		}
	}
}

func (p printer) HandleSnapshot(ctx context.Context, m consensus.Message, body io.Reader) error {
	_, err := io.Copy(io.Discard, body)
	return err
}

func (p printer) Unreachable(id uint64) {}

// Two transports on loopback: member 1 sends member 2 a few messages,
// delivered in order on one stream. In a cluster, pass the transports to
// consensus.Start instead of calling Start, AddPeer and Send yourself.
func ExampleNew() {
	// Every member holds the group's secret (in production: 32 random
	// bytes from a secrets store, or TLS instead).
	secret := []byte("example secret, 32 bytes long...")
	t1, err := tcp.New(tcp.Config{ID: 1, ListenAddr: "127.0.0.1:0", Secret: secret})
	if err != nil {
		panic(err)
	}
	defer t1.Close()
	t2, err := tcp.New(tcp.Config{ID: 2, ListenAddr: "127.0.0.1:0", Secret: secret})
	if err != nil {
		panic(err)
	}
	defer t2.Close()

	done := make(chan struct{})
	t1.Start(printer{})
	t2.Start(printer{done})
	t1.AddPeer(2, t2.Addr().String()) // messages queue while it connects
	t2.AddPeer(1, t1.Addr().String()) // t2 accepts only the members it knows

	var msgs []consensus.Message
	for _, s := range []string{"hello", "world", "bye"} {
		msgs = append(msgs, consensus.Message{From: 1, To: 2, Kind: consensus.KindOther, Payload: []byte(s)})
	}
	t1.Send(msgs)
	<-done
	fmt.Println("received:", t2.Stats().Received)
	// Output:
	// member 2 got "hello" from member 1
	// member 2 got "world" from member 1
	// member 2 got "bye" from member 1
	// received: 3
}

// Certificates name the member they belong to with MemberURI; a transport
// with TLS (whose PeerIdentity defaults to MemberIDFromCertificate) lets a
// peer speak only for that member and refuses certificates that name none.
func ExampleMemberIDFromCertificate() {
	// The template a deployment tool signs with the cluster's CA for member 3
	// (plus the member's IP addresses or DNS names, a key and validity).
	tmpl := &x509.Certificate{
		URIs:        []*url.URL{tcp.MemberURI(3)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	fmt.Println(tcp.MemberURI(3))
	id, err := tcp.MemberIDFromCertificate(tmpl)
	fmt.Println(id, err)

	_, err = tcp.MemberIDFromCertificate(&x509.Certificate{})
	fmt.Println(errors.Is(err, tcp.ErrRefused))
	// Output:
	// distkit://member/3
	// 3 <nil>
	// true
}

// A three-member group on loopback, each member with its own TCP
// transport authenticated by a shared secret (set TLS instead, or as
// well, for mutual TLS).
func Example_cluster() {
	// Listen first so every member knows every address up front.
	var trs []*tcp.Transport
	var boot []consensus.Member
	for id := uint64(1); id <= 3; id++ {
		tr, err := tcp.New(tcp.Config{ID: id, ListenAddr: "127.0.0.1:0", Secret: []byte("example secret, 32 bytes long...")})
		if err != nil {
			panic(err)
		}
		trs = append(trs, tr)
		boot = append(boot, consensus.Member{ID: id, Addr: tr.Addr().String()})
	}
	var nodes []*consensus.Node
	for i, tr := range trs {
		n, err := consensus.Start(consensus.Config{
			ID:           uint64(i + 1),
			Memory:       consensus.NewMemoryStore(), // Dir: "..." for durable storage
			Bootstrap:    boot,
			Transport:    tr, // the node starts and closes it
			TickInterval: 10 * time.Millisecond,
		}, consensustest.NewKV())
		if err != nil {
			panic(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Any member accepts proposals; during the first election they wait
	// for a leader.
	res, err := nodes[2].Propose(ctx, consensustest.PutCommand("greeting", "hello over TCP"))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s\n", res)
	// Output:
	// hello over TCP
}
