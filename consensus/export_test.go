package consensus

import (
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// EncodeMessage encodes m as the payload a member of group with
// incarnation inc sends: tests forge messages with it.
func EncodeMessage(group, inc uint64, m *raftpb.Message) []byte {
	b, err := proto.MarshalOptions{}.MarshalAppend(appendEnvelope(nil, group, inc), m)
	if err != nil {
		panic(err)
	}
	return b
}
