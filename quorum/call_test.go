package quorum_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/quorum"
)

// behaviour of one fake replica in a Call test.
type step struct {
	fail  bool
	block bool // wait for ctx cancellation, then report it
}

func TestCallReturnsExactlyNeedWhileStragglersRun(t *testing.T) {
	reps := []int{0, 1, 2, 3, 4}
	started := make(chan int, len(reps))
	cancelled := make(chan int, len(reps))
	got, err := quorum.Call(context.Background(), reps, 3, func(ctx context.Context, i int) (int, error) {
		started <- i
		if i >= 3 { // stragglers: run until cancelled
			<-ctx.Done()
			cancelled <- i
			return 0, ctx.Err()
		}
		return i * 10, nil
	})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	slices.Sort(got)
	if want := []int{0, 10, 20}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	// Both stragglers were still running at return and now see cancellation.
	var seen []int
	for range 2 {
		select {
		case i := <-cancelled:
			seen = append(seen, i)
		case <-time.After(10 * time.Second):
			t.Fatal("straggler never saw its context cancelled")
		}
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []int{3, 4}) {
		t.Fatalf("cancelled stragglers %v, want [3 4]", seen)
	}
}

func TestCallFailsFastWithoutWaitingForStragglers(t *testing.T) {
	release := make(chan struct{})
	done := make(chan struct{}, 2)
	boom := errors.New("boom")
	reps := []int{0, 1, 2, 3}
	// need 3 of 4: two failures make it impossible while 2 replicas block.
	_, err := quorum.Call(context.Background(), reps, 3, func(ctx context.Context, i int) (int, error) {
		if i < 2 {
			return 0, fmt.Errorf("replica %d: %w", i, boom)
		}
		defer func() { done <- struct{}{} }()
		select {
		case <-release: // never closed before Call returns
			return i, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	close(release)
	for range 2 {
		<-done
	}
	if !errors.Is(err, quorum.ErrNoQuorum) {
		t.Fatalf("err = %v, want ErrNoQuorum", err)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want it to wrap each replica error", err)
	}
	var qe *quorum.Error
	if !errors.As(err, &qe) {
		t.Fatalf("err is %T, want *quorum.Error", err)
	}
	if qe.Need != 3 || qe.Succeeded != 0 || len(qe.Failed) != 2 || qe.Cause != nil {
		t.Fatalf("Error = %+v", qe)
	}
	idx := []int{qe.Failed[0].Index, qe.Failed[1].Index}
	slices.Sort(idx)
	if !slices.Equal(idx, []int{0, 1}) {
		t.Fatalf("failed indexes %v, want [0 1]", idx)
	}
}

func TestCallNeedOutOfRange(t *testing.T) {
	for _, tc := range []struct {
		reps, need int
	}{{3, 0}, {3, -1}, {3, 4}, {0, 1}, {0, 0}} {
		called := false
		_, err := quorum.Call(context.Background(), make([]int, tc.reps), tc.need,
			func(context.Context, int) (int, error) { called = true; return 0, nil })
		if !errors.Is(err, quorum.ErrNeed) {
			t.Errorf("reps=%d need=%d: err = %v, want ErrNeed", tc.reps, tc.need, err)
		}
		if called {
			t.Errorf("reps=%d need=%d: fn was called", tc.reps, tc.need)
		}
	}
}

func TestCallTable(t *testing.T) {
	errX := errors.New("x")
	for _, tc := range []struct {
		name    string
		steps   []step
		need    int
		wantErr bool
		wantOK  int
	}{
		{"all succeed need all", []step{{}, {}, {}}, 3, false, 3},
		{"one of three", []step{{fail: true}, {fail: true}, {}}, 1, false, 1},
		{"majority with one failure", []step{{fail: true}, {}, {}}, 2, false, 2},
		{"all fail", []step{{fail: true}, {fail: true}, {fail: true}}, 1, true, 0},
		{"need all, one fails, others block", []step{{fail: true}, {block: true}, {block: true}}, 3, true, 0},
		{"quorum impossible after second failure", []step{{}, {fail: true}, {fail: true}, {block: true}}, 3, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := quorum.Call(context.Background(), tc.steps, tc.need,
				func(ctx context.Context, s step) (int, error) {
					switch {
					case s.fail:
						return 0, errX
					case s.block:
						<-ctx.Done()
						return 0, ctx.Err()
					}
					return 1, nil
				})
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				var qe *quorum.Error
				if !errors.As(err, &qe) || qe.Succeeded > tc.wantOK || !errors.Is(err, errX) {
					t.Fatalf("err = %#v", err)
				}
				return
			}
			if len(got) != tc.wantOK {
				t.Fatalf("len(results) = %d, want %d", len(got), tc.wantOK)
			}
		})
	}
}

func TestCallParentCancelReturnsPromptly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 3)
	finished := make(chan struct{}, 3)
	errc := make(chan error, 1)
	go func() {
		_, err := quorum.Call(ctx, []int{1, 2, 3}, 2, func(ctx context.Context, int int) (int, error) {
			defer func() { finished <- struct{}{} }()
			started <- struct{}{}
			<-ctx.Done()
			return 0, ctx.Err()
		})
		errc <- err
	}()
	for range 3 {
		<-started
	}
	cancel()
	err := <-errc
	for range 3 {
		<-finished
	}
	var qe *quorum.Error
	if !errors.As(err, &qe) || !errors.Is(err, context.Canceled) || !errors.Is(err, quorum.ErrNoQuorum) {
		t.Fatalf("err = %v, want ErrNoQuorum wrapping context.Canceled", err)
	}
	if qe.Cause != context.Canceled {
		t.Fatalf("Cause = %v", qe.Cause)
	}

	// Already-cancelled context: nothing is called.
	called := false
	_, err = quorum.Call(ctx, []int{1}, 1, func(context.Context, int) (int, error) { called = true; return 0, nil })
	if !errors.Is(err, context.Canceled) || called {
		t.Fatalf("done ctx: err = %v, called = %v", err, called)
	}
}

func TestErrorMessageListsReplicas(t *testing.T) {
	e := &quorum.Error{Need: 2, Succeeded: 1, Failed: []quorum.ReplicaError{
		{Index: 0, Node: "a", Err: errors.New("down")},
		{Index: 2, Err: errors.New("slow")},
	}}
	want := "quorum: not enough successful replicas: 1 of 2 needed: a: down; replica 2: slow"
	if e.Error() != want {
		t.Fatalf("Error() = %q, want %q", e.Error(), want)
	}
}

func TestGatherReportsReplicaIndexes(t *testing.T) {
	reps := []string{"a", "b", "c", "d"}
	got, err := quorum.Gather(context.Background(), reps, 2, func(ctx context.Context, r string) (string, error) {
		switch r {
		case "a", "c":
			return "", errors.New("down")
		}
		return r + "!", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(got, func(x, y quorum.Result[string]) int { return x.Index - y.Index })
	want := []quorum.Result[string]{{Index: 1, Value: "b!"}, {Index: 3, Value: "d!"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Gather = %+v, want %+v", got, want)
	}
	if _, err := quorum.Gather(context.Background(), reps, 5, func(context.Context, string) (int, error) { return 0, nil }); !errors.Is(err, quorum.ErrNeed) {
		t.Fatalf("need 5 of 4: %v", err)
	}
}
