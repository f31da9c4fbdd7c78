package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/distkit/distkit/bench/kv/internal/load"
)

// respDriver speaks the Redis protocol through go-redis, one connection per
// client. On connect go-redis sends "HELLO 2" and accepts an error reply
// (servers without HELLO stay on RESP2); kvload then sends PING once, and
// during the run only "SET key value" and "GET key". -target leader also
// sends INFO to every endpoint.
type respDriver struct {
	clients []*redis.Client
}

func respOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:            addr,
		Protocol:        2,
		DisableIdentity: true, // no CLIENT SETINFO on connect
		PoolSize:        1,
		MaxRetries:      -1, // a failed request counts as an error, never retried
		// Deadlines come from each request's context.
		ContextTimeoutEnabled:    true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

func (d *respDriver) leader(ctx context.Context, endpoints []string) (int, error) {
	var errs []error
	for i, ep := range endpoints {
		c := redis.NewClient(respOptions(ep))
		info, err := c.Info(ctx).Result()
		_ = c.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("INFO on %s: %w", ep, err))
			continue
		}
		if role := infoField(info, "role"); role == "leader" || role == "master" {
			return i, nil
		}
	}
	errs = append(errs, errors.New("no endpoint reports role:leader or role:master in INFO"))
	return 0, errors.Join(errs...)
}

// infoField returns the value of "name:value" in an INFO reply.
func infoField(info, name string) string {
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && strings.EqualFold(k, name) {
			return strings.ToLower(strings.TrimSpace(v))
		}
	}
	return ""
}

func (d *respDriver) dial(ctx context.Context, endpoints []string, assign []int) ([]load.Client, error) {
	out := make([]load.Client, len(assign))
	for i, a := range assign {
		c := redis.NewClient(respOptions(endpoints[a]))
		d.clients = append(d.clients, c)
		if err := c.Ping(ctx).Err(); err != nil {
			return nil, fmt.Errorf("client %d: PING %s: %w", i, endpoints[a], err)
		}
		out[i] = respClient{c}
	}
	return out, nil
}

func (d *respDriver) classify(err error) string {
	var re redis.Error
	switch {
	case errors.As(err, &re):
		code, _, _ := strings.Cut(re.Error(), " ")
		return "resp:" + code
	case errors.Is(err, redis.ErrPoolTimeout):
		return "pool-timeout"
	}
	return load.ClassifyError(err)
}

func (d *respDriver) close() error {
	var errs []error
	for _, c := range d.clients {
		errs = append(errs, c.Close())
	}
	d.clients = nil
	return errors.Join(errs...)
}

type respClient struct{ c *redis.Client }

func (r respClient) Set(ctx context.Context, key, value []byte) error {
	return r.c.Set(ctx, string(key), value, 0).Err()
}

func (r respClient) Get(ctx context.Context, key []byte) (bool, error) {
	err := r.c.Get(ctx, string(key)).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	return err == nil, err
}
