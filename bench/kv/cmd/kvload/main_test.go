package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestInfoField(t *testing.T) {
	info := "# Replication\r\nrole:master\r\nconnected_slaves:0\r\n# Raft\r\nRole: Leader \r\nterm:7\r\n"
	tests := []struct{ name, want string }{
		{"role", "master"}, // the first match wins
		{"term", "7"},
		{"leader", ""},
	}
	for _, tt := range tests {
		if got := infoField(info, tt.name); got != tt.want {
			t.Errorf("infoField(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := infoField("role: Leader\n", "ROLE"); got != "leader" {
		t.Errorf("case-insensitive lookup = %q, want leader", got)
	}
}

func TestRunRejectsBadFlagsWithoutConnecting(t *testing.T) {
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"-proto", "memcached"}, 1, "-proto must be resp or etcd"},
		{[]string{"-mix", "del"}, 1, "unknown operation"},
		{[]string{"-clients", "0"}, 1, "-clients must be at least 1"},
		{[]string{"-duration", "0s"}, 1, "must be positive"},
		{[]string{"-proto", "etcd", "-read", "stale"}, 1, "-read must be"},
		{[]string{"-target", "random"}, 1, "-target must be"},
		{[]string{"-endpoints", " , "}, 1, "-endpoints is empty"},
		{[]string{"-keys", "0"}, 1, "key space"},
		{[]string{"-nosuchflag"}, 2, "flag provided but not defined"},
		{[]string{"extra"}, 2, "unexpected arguments"},
	}
	for _, tt := range tests {
		var stdout, stderr strings.Builder
		code := run(tt.args, &stdout, &stderr)
		if code != tt.code || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.msg)
		}
	}
}

func TestEtcdClassify(t *testing.T) {
	d := &etcdDriver{}
	tests := []struct {
		err  error
		want string
	}{
		{rpctypes.ErrGRPCTimeout, "etcd:request timed out"},
		{rpctypes.Error(rpctypes.ErrGRPCNoLeader), "etcd:no leader"},
		{status.Error(codes.Unavailable, "connection refused"), "grpc:Unavailable"},
		{status.Error(codes.DeadlineExceeded, "slow"), "timeout"},
		{context.DeadlineExceeded, "timeout"},
		{errors.New("boom"), "other"},
	}
	for _, tt := range tests {
		if got := d.classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

// respErr is a server error reply as go-redis reports it.
type respErr string

func (e respErr) Error() string { return string(e) }
func (respErr) RedisError()     {}

func TestRespClassify(t *testing.T) {
	d := &respDriver{}
	tests := []struct {
		err  error
		want string
	}{
		{respErr("ERR unknown command 'CONFIG'"), "resp:ERR"},
		{fmt.Errorf("wrapped: %w", respErr("MOVED 3999 127.0.0.1:6381")), "resp:MOVED"},
		{redis.ErrPoolTimeout, "pool-timeout"},
		{context.DeadlineExceeded, "timeout"},
		{io.EOF, "conn-closed"},
	}
	for _, tt := range tests {
		if got := d.classify(tt.err); got != tt.want {
			t.Errorf("classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
