package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/distkit/distkit/bench/kv/internal/load"
)

// etcdDriver speaks etcd's v3 KV API: SET is a Put, GET a Range of one key,
// linearizable unless serializable is set. Clients share conns gRPC
// connections (client i uses connection i mod conns); with -target spread,
// connection j goes to endpoint j mod len(endpoints).
type etcdDriver struct {
	conns        int
	serializable bool
	dialTimeout  time.Duration
	clis         []*clientv3.Client
}

func (d *etcdDriver) newClient(ctx context.Context, endpoint string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: d.dialTimeout,
		Context:     ctx,
		Logger:      zap.NewNop(),
	})
}

func (d *etcdDriver) leader(ctx context.Context, endpoints []string) (int, error) {
	var errs []error
	for i, ep := range endpoints {
		cli, err := d.newClient(ctx, ep)
		if err != nil {
			errs = append(errs, fmt.Errorf("connect %s: %w", ep, err))
			continue
		}
		st, err := cli.Status(ctx, ep)
		_ = cli.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("status of %s: %w", ep, err))
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.GetMemberId() {
			return i, nil
		}
	}
	errs = append(errs, errors.New("no endpoint reports itself as leader"))
	return 0, errors.Join(errs...)
}

func (d *etcdDriver) dial(ctx context.Context, endpoints []string, assign []int) ([]load.Client, error) {
	// Connection j serves the clients i with i mod conns == j and goes to
	// the endpoint of its first client.
	byConn := make([]*clientv3.Client, d.conns)
	out := make([]load.Client, len(assign))
	for i, a := range assign {
		j := i % d.conns
		if byConn[j] == nil {
			// The client's context must outlive dialling: it is the
			// lifetime of the connection, closed by close().
			cli, err := d.newClient(context.WithoutCancel(ctx), endpoints[a])
			if err != nil {
				return nil, fmt.Errorf("connect %s: %w", endpoints[a], err)
			}
			d.clis = append(d.clis, cli)
			byConn[j] = cli
		}
		out[i] = etcdClient{kv: byConn[j], serializable: d.serializable}
	}
	return out, nil
}

func (d *etcdDriver) classify(err error) string {
	var ee rpctypes.EtcdError
	if errors.As(rpctypes.Error(err), &ee) {
		return "etcd:" + strings.TrimPrefix(ee.Error(), "etcdserver: ")
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return load.ClassifyError(err)
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.DeadlineExceeded:
			return "timeout"
		case codes.Canceled:
			return "canceled"
		}
		return "grpc:" + s.Code().String()
	}
	return load.ClassifyError(err)
}

func (d *etcdDriver) close() error {
	var errs []error
	for _, c := range d.clis {
		errs = append(errs, c.Close())
	}
	d.clis = nil
	return errors.Join(errs...)
}

type etcdClient struct {
	kv           clientv3.KV
	serializable bool
}

func (e etcdClient) Set(ctx context.Context, key, value []byte) error {
	_, err := e.kv.Put(ctx, string(key), string(value))
	return err
}

func (e etcdClient) Get(ctx context.Context, key []byte) (bool, error) {
	var opts []clientv3.OpOption
	if e.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := e.kv.Get(ctx, string(key), opts...)
	if err != nil {
		return false, err
	}
	return len(resp.Kvs) > 0, nil
}
