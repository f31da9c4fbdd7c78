package clocktest_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/clock/clocktest"
)

func TestFakeTimersFireInOrderOnAdvance(t *testing.T) {
	f := clocktest.NewFake(time.Time{})
	if got := f.Now(); !got.Equal(clocktest.Epoch) {
		t.Fatalf("Now() = %v; want %v", got, clocktest.Epoch)
	}
	t2 := f.NewTimer(2 * time.Second)
	t1 := f.NewTimer(time.Second)
	f.Advance(999 * time.Millisecond)
	select {
	case <-t1.C():
		t.Fatal("timer fired before its deadline")
	default:
	}
	f.Advance(time.Millisecond)
	if got := <-t1.C(); !got.Equal(clocktest.Epoch.Add(time.Second)) {
		t.Fatalf("t1 fired with %v", got)
	}
	if f.Waiters() != 1 {
		t.Fatalf("Waiters() = %d; want 1", f.Waiters())
	}
	if !t2.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	if t2.Stop() {
		t.Fatal("second Stop returned true")
	}
	f.Advance(time.Hour)
	select {
	case <-t2.C():
		t.Fatal("stopped timer fired")
	default:
	}
}

func TestFakeResetAndAfterFunc(t *testing.T) {
	f := clocktest.NewFake(time.Time{})
	var fired atomic.Int32
	done := make(chan struct{})
	tm := f.AfterFunc(time.Minute, func() { fired.Add(1); close(done) })
	if tm.C() != nil {
		t.Fatal("AfterFunc timer has a channel")
	}
	if !tm.Reset(2 * time.Minute) {
		t.Fatal("Reset of an active timer returned false")
	}
	f.Advance(time.Minute)
	if fired.Load() != 0 {
		t.Fatal("reset timer fired at its old deadline")
	}
	f.Advance(time.Minute)
	<-done
	if tm.Reset(time.Second) {
		t.Fatal("Reset of a fired timer returned true")
	}
	tm.Stop()
}

func TestFakeSetBackwardsKeepsTimers(t *testing.T) {
	f := clocktest.NewFake(time.Time{})
	tm := f.NewTimer(time.Second)
	f.Set(clocktest.Epoch.Add(-time.Hour))
	if got := f.Since(clocktest.Epoch); got != -time.Hour {
		t.Fatalf("Since = %v; want -1h", got)
	}
	f.Set(clocktest.Epoch.Add(time.Second))
	<-tm.C()
}

func TestSleepWithFake(t *testing.T) {
	f := clocktest.NewFake(time.Time{})
	ctx := context.Background()
	errc := make(chan error, 1)
	go func() { errc <- clock.Sleep(ctx, f, time.Second) }()
	if err := f.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	f.Advance(time.Second)
	if err := <-errc; err != nil {
		t.Fatalf("Sleep = %v; want nil", err)
	}
}

func TestSleepCancelled(t *testing.T) {
	f := clocktest.NewFake(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- clock.Sleep(ctx, f, time.Hour) }()
	if err := f.BlockUntil(ctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Fatalf("Sleep = %v; want context.Canceled", err)
	}
	if f.Waiters() != 0 {
		t.Fatalf("Sleep left %d timers pending", f.Waiters())
	}
	if err := clock.Sleep(ctx, f, time.Second); err != context.Canceled {
		t.Fatalf("Sleep on a done ctx = %v", err)
	}
}

func TestBlockUntilHonoursContext(t *testing.T) {
	f := clocktest.NewFake(time.Time{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.BlockUntil(ctx, 1); err != context.Canceled {
		t.Fatalf("BlockUntil = %v; want context.Canceled", err)
	}
}
