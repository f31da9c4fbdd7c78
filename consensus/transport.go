package consensus

import (
	"context"
	"io"
)

// MessageKind classifies a Message so a transport can route and prioritise
// it (for example log appends on their own stream, heartbeats on another)
// without decoding it.
type MessageKind uint8

// Message kinds.
const (
	KindOther     MessageKind = iota // votes, read index, transfer, ...
	KindAppend                       // log replication and its responses
	KindHeartbeat                    // heartbeats and their responses
	KindSnapshot                     // snapshot header; always sent with SendSnapshot
)

// Message is one raft message between two members. Payload is an opaque,
// versioned encoding owned by the node; transports carry it unchanged.
type Message struct {
	From, To uint64
	Kind     MessageKind
	Payload  []byte
}

// Transport carries messages between the members of a group.
//
// A Node calls Start once before any other method, Send and the peer
// methods from its raft goroutine, SendSnapshot from per-peer snapshot
// goroutines (at most one per peer at a time), and Close once when the node
// closes. Implementations must be safe for that concurrency.
//
// Delivery is best effort: raft tolerates loss, duplication and reordering
// of Send traffic, so a transport should drop rather than block or buffer
// without bound. What a transport must not do is deliver a message to a
// member other than Message.To, or alter a payload.
type Transport interface {
	// Start begins delivering inbound traffic addressed to this member to h.
	Start(h Handler) error

	// Send queues msgs for delivery and returns without waiting for the
	// network. It must not block the caller on a slow or dead peer; when a
	// peer's queue is full or its connection is down, drop the messages and
	// call Handler.Unreachable for that peer. Messages to one peer should be
	// delivered in the order given (a stream per peer), batching as many as
	// are queued into each write. The transport owns msgs after the call.
	Send(msgs []Message)

	// SendSnapshot streams a snapshot to msg.To: msg is the snapshot header
	// (Kind KindSnapshot) and body the snapshot itself, which can be large;
	// send it in bounded chunks, never whole in memory. It returns nil only
	// after the receiver's Handler.HandleSnapshot has returned nil. It must
	// return promptly when ctx ends.
	SendSnapshot(ctx context.Context, msg Message, body io.Reader) error

	// AddPeer tells the transport how to reach member id. It is called for
	// every known member (including on restart), and again when an address
	// changes. addr may be empty for transports that route by id.
	AddPeer(id uint64, addr string)

	// RemovePeer forgets member id; traffic from it should be refused.
	RemovePeer(id uint64)

	// Close stops the transport and releases its resources. After Close,
	// no Handler method is called.
	Close() error
}

// Handler receives inbound traffic from a Transport. The Node supplies it.
type Handler interface {
	// HandleMessages delivers a batch received from the network. It does
	// not block on the node's work: if the node is overloaded, messages are
	// dropped (raft retransmits). The handler does not retain msgs.
	HandleMessages(msgs []Message)

	// HandleSnapshot receives a snapshot stream: it reads body to EOF,
	// stores it durably, then hands the header to raft. The transport
	// acknowledges success to the sender only when it returns nil.
	HandleSnapshot(ctx context.Context, msg Message, body io.Reader) error

	// Unreachable reports that messages to member id could not be delivered,
	// so raft stops optimistic replication to it and probes instead.
	Unreachable(id uint64)
}
