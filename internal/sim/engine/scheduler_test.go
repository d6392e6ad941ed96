package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// planWithBlocks is a Plan whose KV pool has n blocks, to force preemption.
func planWithBlocks(n int) Plan { return Plan{NumBlocks: n} }

func TestSingleRequestTimeline(t *testing.T) {
	cfg := defaultConfig(64, 2048)
	p, err := NewPlan(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := NewScheduler(cfg, p)
	if st := s.Step(); st.Duration != 0 || len(st.Tokens) != 0 || s.HasWork() {
		t.Fatalf("idle step = %+v", st)
	}
	if err := s.Add(Request{ID: "a", PromptTokens: 200, OutputTokens: 200, Ref: 7}); err != nil {
		t.Fatal(err)
	}
	st := s.Step()
	if st.PrefillTokens != 200 || st.DecodeSeqs != 0 || len(st.Tokens) != 1 || st.Tokens[0] != (TokenEvent{ID: "a", Index: 0, Ref: 7}) {
		t.Fatalf("prefill step = %+v", st)
	}
	if got := s.Stats().UsedBlocks; got != 13 { // 200 tokens in 16-token blocks
		t.Errorf("used blocks after prefill = %d, want 13", got)
	}
	steps := 1
	for s.HasWork() {
		st = s.Step()
		steps++
		if st.DecodeSeqs != 1 || st.PrefillTokens != 0 || st.ContextTokens != 200+steps-1 {
			t.Fatalf("step %d = %+v", steps, st)
		}
	}
	if steps != 200 || !st.Tokens[0].Finished || st.Tokens[0].Index != 199 {
		t.Errorf("finished after %d steps with %+v", steps, st.Tokens)
	}
	if u := s.Stats().UsedBlocks; u != 0 {
		t.Errorf("blocks leaked: %d", u)
	}
}

func TestChunkedPrefill(t *testing.T) {
	cfg := defaultConfig(4, 128)
	s := NewScheduler(cfg, planWithBlocks(100))
	if err := s.Add(Request{ID: "a", PromptTokens: 300, OutputTokens: 2}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{128, 128, 44} {
		st := s.Step()
		if st.PrefillTokens != want {
			t.Fatalf("chunk %d = %d tokens, want %d", i, st.PrefillTokens, want)
		}
		if got := len(st.Tokens); (i < 2 && got != 0) || (i == 2 && got != 1) {
			t.Fatalf("chunk %d produced %d tokens", i, got)
		}
	}
}

func TestNoChunkedPrefillWaitsForBudget(t *testing.T) {
	cfg := defaultConfig(4, 512)
	cfg.EnableChunkedPrefill = false
	s := NewScheduler(cfg, planWithBlocks(1000))
	for _, id := range []string{"a", "b"} {
		if err := s.Add(Request{ID: id, PromptTokens: 300, OutputTokens: 3}); err != nil {
			t.Fatal(err)
		}
	}
	st := s.Step()
	if st.PrefillTokens != 300 || s.Stats().Running != 1 || s.Stats().Waiting != 1 {
		t.Fatalf("step 1 = %+v, stats %+v: b must wait for a whole-prompt budget", st, s.Stats())
	}
	st = s.Step() // a decodes (1), b's 300 fit the remaining 511
	if st.PrefillTokens != 300 || st.DecodeSeqs != 1 {
		t.Fatalf("step 2 = %+v", st)
	}
}

func TestPreemptionRecompute(t *testing.T) {
	// 3 blocks of 16: a and b each need 2 blocks once past 16 tokens.
	cfg := defaultConfig(4, 512)
	s := NewScheduler(cfg, planWithBlocks(3))
	_ = s.Add(Request{ID: "a", PromptTokens: 15, OutputTokens: 10})
	_ = s.Add(Request{ID: "b", PromptTokens: 15, OutputTokens: 10})
	st := s.Step() // both prefill 15 tokens: 1 block each
	if st.PrefillTokens != 30 || len(st.Tokens) != 2 {
		t.Fatalf("step 1 = %+v", st)
	}
	st = s.Step() // both decode token 15 → 16 tokens still in 1 block each
	if st.DecodeSeqs != 2 {
		t.Fatalf("step 2 = %+v", st)
	}
	st = s.Step() // a needs a 2nd block (takes the last), b needs one too → b preempted
	if !slices.Equal(st.Preempted, []string{"b"}) || st.DecodeSeqs != 1 {
		t.Fatalf("step 3 = %+v", st)
	}
	if stats := s.Stats(); stats.Running != 1 || stats.Waiting != 1 || stats.Preemptions != 1 || stats.UsedBlocks != 2 {
		t.Fatalf("stats after preemption = %+v", stats)
	}
	// b keeps its 2 emitted tokens and later recomputes 15 + 2 = 17 tokens.
	for s.HasWork() {
		st = s.Step()
		for _, e := range st.Tokens {
			if e.ID == "b" && e.Index == 2 && st.PrefillTokens < 17 {
				t.Errorf("b's 3rd token came without recomputing 17 tokens: %+v", st)
			}
		}
	}
}

func TestAbortFreesBlocks(t *testing.T) {
	cfg := defaultConfig(4, 512)
	s := NewScheduler(cfg, planWithBlocks(100))
	_ = s.Add(Request{ID: "a", PromptTokens: 100, OutputTokens: 10})
	_ = s.Add(Request{ID: "b", PromptTokens: 100, OutputTokens: 10})
	_ = s.Add(Request{ID: "c", PromptTokens: 100, OutputTokens: 10})
	s.Step()
	if !s.Abort("b") || s.Abort("b") || s.Abort("zzz") {
		t.Fatal("abort results wrong")
	}
	if st := s.Stats(); st.UsedBlocks != 14 || st.Running != 2 {
		t.Errorf("after abort of running b: %+v", st)
	}
	if err := s.Add(Request{ID: "b", PromptTokens: 10, OutputTokens: 1}); err != nil {
		t.Errorf("re-adding an aborted id: %v", err)
	}
	if !s.Abort("b") {
		t.Error("abort of waiting b")
	}
	if err := s.Add(Request{ID: "a", PromptTokens: 10, OutputTokens: 1}); err == nil {
		t.Error("duplicate id accepted")
	}
}

func TestAddRejects(t *testing.T) {
	s := NewScheduler(defaultConfig(4, 512), planWithBlocks(10))
	for _, r := range []Request{
		{ID: "p0", PromptTokens: 0, OutputTokens: 1},
		{ID: "o0", PromptTokens: 1, OutputTokens: 0},
		{ID: "long", PromptTokens: 500, OutputTokens: 100},
		{ID: "pool", PromptTokens: 200, OutputTokens: 100},           // 19 blocks > 10
		{ID: "overflow", PromptTokens: 5, OutputTokens: math.MaxInt}, // sum wraps negative
	} {
		if err := s.Add(r); err == nil {
			t.Errorf("%s accepted", r.ID)
		}
	}
}

// TestInvariantsRandomized drives random configurations and workloads
// (arrivals, aborts, tight KV pools) and checks vLLM V1's rules every step.
func TestInvariantsRandomized(t *testing.T) {
	var hits, preemptedHits int64
	for seed := uint64(1); seed <= 60; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runRandomized(t, seed, false) })
		t.Run(fmt.Sprint(seed, "-prefix"), func(t *testing.T) {
			st := runRandomized(t, seed, true)
			hits += st.PrefixCacheHits
			preemptedHits += st.PreemptedPrefixCacheHits
		})
	}
	// The prefix runs must exercise hits, and recompute hits, or their
	// checks test little.
	if hits == 0 || preemptedHits == 0 {
		t.Errorf("randomized prefix runs: %d hit tokens, %d on recompute", hits, preemptedHits)
	}
}

func runRandomized(t *testing.T, seed uint64, caching bool) Stats {
	rng := rand.New(rand.NewPCG(seed, 42))
	cfg := defaultConfig(1+rng.IntN(12), 0)
	cfg.EnablePrefixCaching = caching
	cfg.MaxModelLen = 64 + rng.IntN(200)
	cfg.BlockSize = []int{1, 8, 16}[rng.IntN(3)]
	cfg.EnableChunkedPrefill = rng.IntN(3) > 0
	cfg.MaxNumBatchedTokens = max(cfg.MaxNumSeqs, 8+rng.IntN(300))
	if !cfg.EnableChunkedPrefill {
		cfg.MaxNumBatchedTokens = max(cfg.MaxNumBatchedTokens, cfg.MaxModelLen)
	}
	minBlocks := (cfg.MaxModelLen + cfg.BlockSize - 1) / cfg.BlockSize
	total := minBlocks + rng.IntN(4*minBlocks)
	s := NewScheduler(cfg, planWithBlocks(total))
	// With caching, half the prompts start with part of one shared text,
	// so that blocks are shared, hit, evicted and re-hit.
	shared := make([]int32, cfg.MaxModelLen)
	for i := range shared {
		shared[i] = int32(rng.IntN(1000))
	}

	type info struct {
		out, got int
		aborted  bool
		started  bool
		finished bool
		addOrder int
		prompt   int
	}
	reqs := map[string]*info{}
	var order []string // add order
	nextID := 0
	add := func() {
		id := fmt.Sprintf("r%d", nextID)
		nextID++
		p := 1 + rng.IntN(cfg.MaxModelLen-1)
		o := 1 + rng.IntN(cfg.MaxModelLen-p)
		r := Request{ID: id, PromptTokens: p, OutputTokens: o}
		if caching && rng.IntN(2) == 0 {
			r.Tokens = make([]int32, p)
			k := copy(r.Tokens, shared[:rng.IntN(p+1)])
			for ; k < p; k++ {
				r.Tokens[k] = int32(rng.IntN(1000))
			}
		}
		if err := s.Add(r); err != nil {
			t.Fatalf("add: %v", err)
		}
		reqs[id] = &info{out: o, addOrder: len(order), prompt: p}
		order = append(order, id)
	}
	for i := 0; i < 3; i++ {
		add()
	}
	preemptionsSeen := 0
	for step := 0; step < 20000 && (s.HasWork() || nextID < 150); step++ {
		if nextID < 150 && rng.IntN(3) == 0 {
			for k := rng.IntN(4); k > 0; k-- {
				add()
			}
		}
		if rng.IntN(25) == 0 && len(s.byID) > 0 {
			// Abort a random live request.
			live := make([]string, 0, len(s.byID))
			for id := range s.byID {
				live = append(live, id)
			}
			slices.Sort(live)
			id := live[rng.IntN(len(live))]
			before := s.Stats().UsedBlocks
			held := len(s.byID[id].blocks)
			if !s.Abort(id) {
				t.Fatalf("abort %s of a live request failed", id)
			}
			// Blocks shared with other requests stay in use.
			if after := s.Stats().UsedBlocks; after > before || after < before-held || (!caching && after != before-held) {
				t.Fatalf("abort of %s freed %d blocks, held %d", id, before-after, held)
			}
			reqs[id].aborted = true
		}

		prevRunning := make([]string, len(s.running))
		for i, q := range s.running {
			prevRunning[i] = q.id
		}
		st := s.Step()

		// Budget and seats.
		if st.PrefillTokens+st.DecodeSeqs > cfg.MaxNumBatchedTokens {
			t.Fatalf("step %d scheduled %d tokens > budget %d", step, st.PrefillTokens+st.DecodeSeqs, cfg.MaxNumBatchedTokens)
		}
		stats := s.Stats()
		if stats.Running > cfg.MaxNumSeqs {
			t.Fatalf("running %d > max_num_seqs %d", stats.Running, cfg.MaxNumSeqs)
		}
		// Blocks: within capacity, equal to the sum of allocations, and
		// waiting requests hold none.
		if stats.UsedBlocks > stats.TotalBlocks || stats.UsedBlocks < 0 {
			t.Fatalf("used blocks %d of %d", stats.UsedBlocks, stats.TotalBlocks)
		}
		sum := 0
		for _, q := range s.running {
			sum += len(q.blocks)
			if len(q.blocks) < s.blocksFor(q.numComputed) {
				t.Fatalf("%s holds %d blocks for %d computed tokens", q.id, len(q.blocks), q.numComputed)
			}
		}
		for i := 0; i < s.waiting.len(); i++ {
			if b := len(s.waiting.at(i).blocks); b != 0 {
				t.Fatalf("waiting %s holds %d blocks", s.waiting.at(i).id, b)
			}
		}
		if !caching && sum != stats.UsedBlocks {
			t.Fatalf("used blocks %d != Σ allocations %d", stats.UsedBlocks, sum)
		}
		checkKV(t, s)
		// Preemption takes the newest running first, puts the victims at
		// the front of waiting, and no request is admitted that step.
		if n := len(st.Preempted); n > 0 {
			preemptionsSeen += n
			for k, id := range st.Preempted {
				if want := prevRunning[len(prevRunning)-1-k]; id != want {
					t.Fatalf("preempted %v; newest running were %v", st.Preempted, prevRunning)
				}
				if front := s.waiting.at(n - 1 - k).id; front != id {
					t.Fatalf("preempted %s is not at the front of waiting (found %s)", id, front)
				}
			}
			if stats.Running > len(prevRunning)-n {
				t.Fatalf("admitted in a step that preempted: running %d, before %d, preempted %d", stats.Running, len(prevRunning), n)
			}
		}
		// FCFS: a request starts only after every earlier live one started.
		// Started = running now, or produced a token (it may have finished
		// in the step that admitted it).
		var newly []*info
		mark := func(id string) {
			if in := reqs[id]; !in.started {
				in.started = true
				newly = append(newly, in)
			}
		}
		for _, q := range s.running {
			mark(q.id)
		}
		for _, e := range st.Tokens {
			mark(e.ID)
		}
		for _, in := range newly {
			for _, earlier := range order[:in.addOrder] {
				if e := reqs[earlier]; !e.started && !e.aborted {
					t.Fatalf("%s started before earlier %s", order[in.addOrder], earlier)
				}
			}
		}
		// Tokens: consecutive indices, finished exactly at OutputTokens.
		if (st.PrefillTokens+st.DecodeSeqs > 0) != (st.Duration > 0) {
			t.Fatalf("duration %v for %+v", st.Duration, st)
		}
		for _, e := range st.Tokens {
			in := reqs[e.ID]
			if e.Index != in.got {
				t.Fatalf("%s token index %d, want %d", e.ID, e.Index, in.got)
			}
			in.got++
			if e.Finished != (in.got == in.out) {
				t.Fatalf("%s finished=%v at token %d of %d", e.ID, e.Finished, in.got, in.out)
			}
			if e.Finished {
				in.finished = true
				if _, still := s.byID[e.ID]; still {
					t.Fatalf("finished %s still in the scheduler", e.ID)
				}
			}
		}
	}
	if s.HasWork() {
		t.Fatalf("did not drain: %+v", s.Stats())
	}
	for id, in := range reqs {
		if !in.aborted && (!in.finished || in.got != in.out) {
			t.Errorf("%s: %d of %d tokens, finished=%v", id, in.got, in.out, in.finished)
		}
	}
	if u := s.Stats().UsedBlocks; u != 0 {
		t.Errorf("blocks leaked after drain: %d", u)
	}
	if s.Stats().Preemptions != preemptionsSeen {
		t.Errorf("Stats.Preemptions %d, seen %d", s.Stats().Preemptions, preemptionsSeen)
	}
	return s.Stats()
}

// TestRandomizedPreempts guards the randomized test's power: the tight pools
// must actually cause preemptions somewhere, or the preemption checks test
// nothing.
func TestRandomizedPreempts(t *testing.T) {
	cfg := defaultConfig(8, 256)
	cfg.MaxModelLen = 128
	s := NewScheduler(cfg, planWithBlocks(8))
	for i := 0; i < 40; i++ {
		_ = s.Add(Request{ID: fmt.Sprint(i), PromptTokens: 20, OutputTokens: 100})
	}
	for s.HasWork() {
		s.Step()
	}
	if s.Stats().Preemptions == 0 {
		t.Error("no preemptions under a pool of 8 blocks")
	}
}

func BenchmarkScheduler(b *testing.B) {
	cfg := defaultConfig(128, 8192)
	p, err := NewPlan(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s := NewScheduler(cfg, p)
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = fmt.Sprint("r", i)
	}
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Keep ~100 requests in flight: 200-in/200-out, one arrival every other step.
		if st := s.Stats(); st.Running+st.Waiting < 100 && i%2 == 0 {
			_ = s.Add(Request{ID: ids[next%len(ids)], PromptTokens: 200, OutputTokens: 200})
			next++
		}
		s.Step()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
}
