module github.com/distkit/distkit

go 1.26.0

require (
	github.com/anishathalye/porcupine v1.3.1
	go.etcd.io/raft/v3 v3.7.0
	go.uber.org/goleak v1.3.0
	google.golang.org/protobuf v1.36.11
	pgregory.net/rapid v1.3.0
)
