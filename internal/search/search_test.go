package search

import (
	"context"
	"errors"
	"math"
	"testing"
)

// capacity is a prober whose SLO holds up to a fixed rate.
func capacity(c float64) ProberFunc[float64] {
	return func(_ context.Context, _ int, rate float64) (float64, bool, error) { return rate, rate <= c, nil }
}

func TestBracketsAndBisects(t *testing.T) {
	r, err := Run(context.Background(), Options{Start: 1, MaxSteps: 40, Precision: 0.01}, capacity(13), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxRate > 13 || r.MaxRate < 13/1.01 || r.FailRate <= 13 || (r.FailRate-r.MaxRate)/r.MaxRate > 0.01 {
		t.Errorf("max %v fail %v, want a 1%% bracket around 13", r.MaxRate, r.FailRate)
	}
	// 1, 2, 4, 8, 16 then bisection.
	for i, want := range []float64{1, 2, 4, 8, 16, 12} {
		if r.Steps[i].Rate != want {
			t.Errorf("step %d rate %v, want %v", i+1, r.Steps[i].Rate, want)
		}
	}
	if b, ok := r.Best(); !ok || b.Rate != r.MaxRate {
		t.Errorf("best %+v", b)
	}
}

func TestShrinksToMin(t *testing.T) {
	r, err := Run(context.Background(), Options{Start: 1, Min: 0.1, MaxSteps: 40}, capacity(0.01), nil)
	if err != nil {
		t.Fatal(err)
	}
	last := r.Steps[len(r.Steps)-1]
	if r.MaxRate != 0 || last.Rate != 0.1 || r.FailRate != 0.1 {
		t.Errorf("max %v fail %v last %v, want no pass and the floor probed last", r.MaxRate, r.FailRate, last.Rate)
	}
}

func TestStopsAtMax(t *testing.T) {
	var seen int
	r, err := Run(context.Background(), Options{Start: 3, Max: 10, MaxSteps: 40}, capacity(math.Inf(1)), func(Step[float64]) { seen++ })
	if err != nil {
		t.Fatal(err)
	}
	if r.MaxRate != 10 || r.FailRate != 0 || len(r.Steps) != 3 || seen != 3 {
		t.Errorf("max %v fail %v after %d steps (%d seen), want 3, 6, 10 all passing", r.MaxRate, r.FailRate, len(r.Steps), seen)
	}
}

func TestStepBudget(t *testing.T) {
	r, _ := Run(context.Background(), Options{MaxSteps: 3}, capacity(100), nil)
	if len(r.Steps) != 3 || r.MaxRate != 4 {
		t.Errorf("%d steps, max %v; want 3 steps up to 4", len(r.Steps), r.MaxRate)
	}
}

func TestErrorKeepsSteps(t *testing.T) {
	boom := errors.New("boom")
	p := ProberFunc[float64](func(_ context.Context, step int, rate float64) (float64, bool, error) {
		if step == 3 {
			return 0, false, boom
		}
		return rate, true, nil
	})
	r, err := Run(context.Background(), Options{}, p, nil)
	if !errors.Is(err, boom) || len(r.Steps) != 2 || r.MaxRate != 2 {
		t.Errorf("err %v, %d steps, max %v", err, len(r.Steps), r.MaxRate)
	}
}

func TestInterruptedStepIsMarked(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := ProberFunc[float64](func(ctx context.Context, step int, rate float64) (float64, bool, error) {
		if step == 2 {
			cancel()
			return rate, false, ctx.Err()
		}
		return rate, true, nil
	})
	r, err := Run(ctx, Options{}, p, nil)
	if !errors.Is(err, context.Canceled) || len(r.Steps) != 2 || !r.Steps[1].Interrupted || r.FailRate != 0 || r.MaxRate != 1 {
		t.Errorf("err %v steps %+v max %v fail %v", err, r.Steps, r.MaxRate, r.FailRate)
	}
}
