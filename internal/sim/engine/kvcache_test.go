package engine

import (
	"fmt"
	"testing"
)

// checkKV verifies the block pool against the scheduler's requests: each
// block's ref count is the number of running requests holding it, the free
// queue holds exactly the unreferenced blocks (numFree of them, each once),
// waiting requests hold nothing, and every hashed block is reachable from
// the cache map under its hash.
func checkKV(t *testing.T, s *Scheduler) {
	t.Helper()
	kv := s.kv
	n := kv.size()
	refs := make([]int32, n)
	for _, q := range s.running {
		if q.numCached > len(q.blocks) {
			t.Fatalf("%s: %d cached of %d blocks", q.id, q.numCached, len(q.blocks))
		}
		for i, b := range q.blocks {
			refs[b]++
			if i < q.numCached && (kv.hash[b] == 0 || kv.hash[b] != q.hashes[i]) {
				t.Fatalf("%s block %d (id %d): hash %x, request's %x", q.id, i, b, kv.hash[b], q.hashes[i])
			}
		}
	}
	for b := range n {
		if refs[b] != kv.refCnt[b] {
			t.Fatalf("block %d: ref count %d, held by %d running requests", b, kv.refCnt[b], refs[b])
		}
	}
	seen := make([]bool, n)
	free := 0
	for b := kv.next[n]; int(b) != n; b = kv.next[b] {
		if seen[b] || kv.refCnt[b] != 0 {
			t.Fatalf("free queue: block %d repeated or referenced (ref %d)", b, kv.refCnt[b])
		}
		if kv.prev[kv.next[b]] != b {
			t.Fatalf("free queue: broken back link at %d", b)
		}
		seen[b] = true
		free++
	}
	if free != kv.numFree {
		t.Fatalf("free queue holds %d blocks, numFree %d", free, kv.numFree)
	}
	for b := range n {
		if kv.refCnt[b] == 0 && !seen[b] {
			t.Fatalf("unreferenced block %d is not in the free queue", b)
		}
		if h := kv.hash[b]; h != 0 {
			found := false
			for c, ok := kv.cached[h]; ok && c >= 0; c = kv.dupNext[c] {
				found = found || c == int32(b)
				if kv.hash[c] != h {
					t.Fatalf("block %d in chain of %x has hash %x", c, h, kv.hash[c])
				}
			}
			if !found {
				t.Fatalf("hashed block %d not reachable under its hash", b)
			}
		}
	}
	if !kv.caching && len(kv.cached) != 0 {
		t.Fatal("blocks cached with caching off")
	}
}

func cachingConfig() Config {
	cfg := defaultConfig(8, 2048)
	cfg.EnablePrefixCaching = true
	return cfg
}

// ids returns n token ids starting at from (distinct runs of ids make
// distinct prompts).
func ids(from, n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(from + i)
	}
	return out
}

// runToEnd steps s until it has no work, checking the pool each step.
func runToEnd(t *testing.T, s *Scheduler) {
	t.Helper()
	for i := 0; s.HasWork(); i++ {
		if i > 10000 {
			t.Fatal("scheduler does not drain")
		}
		s.Step()
		checkKV(t, s)
	}
}

// admit adds r and runs the step that admits it, returning that step.
func admit(t *testing.T, s *Scheduler, r Request) Step {
	t.Helper()
	if err := s.Add(r); err != nil {
		t.Fatal(err)
	}
	st := s.Step()
	checkKV(t, s)
	return st
}

func TestPrefixCacheRepeatedPromptHits(t *testing.T) {
	s := NewScheduler(cachingConfig(), planWithBlocks(100))
	p := ids(1000, 200)
	st := admit(t, s, Request{ID: "a", PromptTokens: 200, OutputTokens: 5, Tokens: p})
	if st.PrefillTokens != 200 || st.PrefixCacheQueries != 200 || st.PrefixCacheHits != 0 {
		t.Fatalf("first request: %+v", st)
	}
	runToEnd(t, s)
	// 199 tokens may hit (the last is recomputed): 12 whole blocks = 192.
	st = admit(t, s, Request{ID: "b", PromptTokens: 200, OutputTokens: 5, Tokens: p})
	if st.PrefillTokens != 8 || st.PrefixCacheQueries != 200 || st.PrefixCacheHits != 192 {
		t.Fatalf("repeated request: %+v, want 8 prefill tokens and 192 hits", st)
	}
	if st.ContextTokens != 200 || len(st.Tokens) != 1 {
		t.Fatalf("repeated request must read all 200 tokens of context and sample: %+v", st)
	}
	runToEnd(t, s)
	stats := s.Stats()
	if stats.PrefixCacheQueries != 400 || stats.PrefixCacheHits != 192 || stats.UsedBlocks != 0 {
		t.Fatalf("stats %+v", stats)
	}
	// The shorter prefill is a shorter modelled step.
	cold := s.StepModel().Duration(200, 0, 200)
	if st.Duration >= cold {
		t.Errorf("hit prefill took %v, cold prefill %v", st.Duration, cold)
	}
}

func TestPrefixCacheConcurrentIdenticalShare(t *testing.T) {
	// vLLM caches a request's full blocks when it schedules them, so an
	// identical request admitted in the same step already hits them and
	// the two share the blocks.
	s := NewScheduler(cachingConfig(), planWithBlocks(100))
	p := ids(1000, 200)
	_ = s.Add(Request{ID: "a", PromptTokens: 200, OutputTokens: 3, Tokens: p})
	_ = s.Add(Request{ID: "b", PromptTokens: 200, OutputTokens: 3, Tokens: p})
	st := s.Step()
	checkKV(t, s)
	if st.PrefillTokens != 208 || st.PrefixCacheHits != 192 || st.PrefixCacheQueries != 400 {
		t.Fatalf("step %+v: want 200 + 8 prefill tokens, 192 hits", st)
	}
	if u := s.Stats().UsedBlocks; u != 13+1 { // 12 shared full blocks + a partial block each
		t.Errorf("used blocks %d, want 14", u)
	}
	runToEnd(t, s)
}

func TestPrefixCacheSharedPrefixHitsWholeBlocks(t *testing.T) {
	for _, shared := range []int{32, 33, 47} {
		t.Run(fmt.Sprint(shared), func(t *testing.T) {
			s := NewScheduler(cachingConfig(), planWithBlocks(100))
			admit(t, s, Request{ID: "a", PromptTokens: 100, OutputTokens: 1, Tokens: ids(1000, 100)})
			runToEnd(t, s)
			// b shares a's first `shared` tokens, then differs: only the
			// 2 full blocks inside the shared part can hit.
			p := append(ids(1000, shared), ids(5000, 100-shared)...)
			st := admit(t, s, Request{ID: "b", PromptTokens: 100, OutputTokens: 1, Tokens: p})
			if st.PrefixCacheHits != 32 || st.PrefillTokens != 68 {
				t.Fatalf("sharing %d tokens: %+v, want 32 hit and 68 prefill tokens", shared, st)
			}
		})
	}
}

func TestPrefixCacheNeverHitsLastToken(t *testing.T) {
	for _, c := range []struct{ prompt, hit int }{
		{16, 0},  // one full block: it holds the last token
		{17, 16}, // the 17th token is computed
		{32, 16}, // two full blocks: the second holds the last token
		{33, 32},
	} {
		s := NewScheduler(cachingConfig(), planWithBlocks(100))
		p := ids(7, c.prompt)
		admit(t, s, Request{ID: "a", PromptTokens: c.prompt, OutputTokens: 1, Tokens: p})
		runToEnd(t, s)
		st := admit(t, s, Request{ID: "b", PromptTokens: c.prompt, OutputTokens: 1, Tokens: p})
		if st.PrefixCacheHits != c.hit || st.PrefillTokens != c.prompt-c.hit || len(st.Tokens) != 1 {
			t.Errorf("prompt %d repeated: %+v, want %d hit tokens", c.prompt, st, c.hit)
		}
	}
}

// cachedBlocks counts the leading full blocks of prompt that are in the
// cache, without touching anything.
func cachedBlocks(s *Scheduler, prompt []int32) int {
	h := hashRoot
	n := 0
	for ; (n+1)*s.blockSize <= len(prompt); n++ {
		h = blockHash(h, prompt[n*s.blockSize:(n+1)*s.blockSize])
		if s.kv.lookup(h) < 0 {
			break
		}
	}
	return n
}

func TestPrefixCacheEvictsLeastRecentlyFreedTailFirst(t *testing.T) {
	// 6 blocks. a then b (33 tokens: 2 full blocks and a partial one each)
	// run and free their blocks, tail first, a's before b's. Free queue:
	// a's partial, a's 2nd, a's 1st, b's partial, b's 2nd, b's 1st.
	s := NewScheduler(cachingConfig(), planWithBlocks(6))
	pa, pb := ids(100, 33), ids(200, 33)
	admit(t, s, Request{ID: "a", PromptTokens: 33, OutputTokens: 1, Tokens: pa})
	admit(t, s, Request{ID: "b", PromptTokens: 33, OutputTokens: 1, Tokens: pb})
	if cachedBlocks(s, pa) != 2 || cachedBlocks(s, pb) != 2 {
		t.Fatalf("cached after a and b: %d, %d blocks, want 2, 2", cachedBlocks(s, pa), cachedBlocks(s, pb))
	}
	// c (2 blocks) takes a's partial block and a's 2nd block.
	admit(t, s, Request{ID: "c", PromptTokens: 17, OutputTokens: 1, Tokens: ids(300, 17)})
	if cachedBlocks(s, pa) != 1 || cachedBlocks(s, pb) != 2 {
		t.Fatalf("after c: a %d, b %d cached blocks, want 1, 2", cachedBlocks(s, pa), cachedBlocks(s, pb))
	}
	// d (2 blocks) takes a's 1st block and b's partial one.
	admit(t, s, Request{ID: "d", PromptTokens: 17, OutputTokens: 1, Tokens: ids(400, 17)})
	if cachedBlocks(s, pa) != 0 || cachedBlocks(s, pb) != 2 {
		t.Fatalf("after d: a %d, b %d cached blocks, want 0, 2", cachedBlocks(s, pa), cachedBlocks(s, pb))
	}
	// e (1 block) takes b's 2nd block: b's head survives and still hits.
	admit(t, s, Request{ID: "e", PromptTokens: 5, OutputTokens: 1, Tokens: ids(500, 5)})
	if cachedBlocks(s, pb) != 1 {
		t.Fatalf("after e: b %d cached blocks, want 1", cachedBlocks(s, pb))
	}
	if st := admit(t, s, Request{ID: "b2", PromptTokens: 33, OutputTokens: 1, Tokens: pb}); st.PrefixCacheHits != 16 {
		t.Errorf("b repeated: %d hit tokens, want 16", st.PrefixCacheHits)
	}
	if st := admit(t, s, Request{ID: "a2", PromptTokens: 33, OutputTokens: 1, Tokens: pa}); st.PrefixCacheHits != 0 {
		t.Errorf("a repeated: %d hit tokens, want 0", st.PrefixCacheHits)
	}
}

func TestPrefixCachePreemptedRecomputeHitsOwnBlocks(t *testing.T) {
	// As TestPreemptionRecompute: 3 blocks, a and b of 15 prompt tokens;
	// b is preempted holding one full block (15 prompt + 1 output token).
	cfg := cachingConfig()
	cfg.MaxNumBatchedTokens = 512
	s := NewScheduler(cfg, planWithBlocks(3))
	_ = s.Add(Request{ID: "a", PromptTokens: 15, OutputTokens: 10, Tokens: ids(100, 15)})
	_ = s.Add(Request{ID: "b", PromptTokens: 15, OutputTokens: 10, Tokens: ids(200, 15)})
	s.Step()
	s.Step()
	if st := s.Step(); len(st.Preempted) != 1 || st.Preempted[0] != "b" {
		t.Fatalf("step 3 = %+v, want b preempted", st)
	}
	exported := s.Stats()
	resumed := false
	for s.HasWork() {
		st := s.Step()
		checkKV(t, s)
		for _, e := range st.Tokens {
			if e.ID == "b" && e.Index == 2 {
				resumed = true
				// b recomputes 17 tokens: 16 hit its own freed block.
				if st.ContextTokens != 17 || st.PrefillTokens+st.DecodeSeqs != 1 {
					t.Errorf("b resumed in %+v, want 1 computed token over 17 of context", st)
				}
			}
		}
	}
	stats := s.Stats()
	if !resumed || stats.PreemptedPrefixCacheHits != 16 || stats.PreemptedPrefixCacheQueries != 17 {
		t.Errorf("resumed=%v stats %+v: want 16 of 17 tokens hit", resumed, stats)
	}
	// vLLM keeps a resumed request's lookup out of the exported counters.
	if stats.PrefixCacheQueries != exported.PrefixCacheQueries || stats.PrefixCacheHits != exported.PrefixCacheHits {
		t.Errorf("exported counters moved on resume: %+v → %+v", exported, stats)
	}
}

func TestPrefixCachePreemptedRecomputeMissesWhenEvicted(t *testing.T) {
	// Same, but a third request takes b's freed block before b resumes.
	cfg := cachingConfig()
	cfg.MaxNumBatchedTokens = 512
	s := NewScheduler(cfg, planWithBlocks(3))
	_ = s.Add(Request{ID: "a", PromptTokens: 15, OutputTokens: 10, Tokens: ids(100, 15)})
	_ = s.Add(Request{ID: "b", PromptTokens: 15, OutputTokens: 10, Tokens: ids(200, 15)})
	s.Step()
	s.Step()
	s.Step() // b preempted; its block is the only free one
	if !s.Abort("b") {
		t.Fatal("abort b")
	}
	_ = s.Add(Request{ID: "c", PromptTokens: 10, OutputTokens: 1, Tokens: ids(300, 10)})
	_ = s.Add(Request{ID: "b", PromptTokens: 15, OutputTokens: 10, Tokens: ids(200, 15)})
	runToEnd(t, s)
	// b (now new) had 15 prompt tokens: never a full block to hit.
	if st := s.Stats(); st.PrefixCacheHits != 0 {
		t.Errorf("hits %d after eviction", st.PrefixCacheHits)
	}
}

func TestPrefixCacheWithoutTokensIsADistinctPrompt(t *testing.T) {
	// Requests given as lengths only (the offline runner) never hit each
	// other, but their lookups are counted as a distinct prompt's would be.
	s := NewScheduler(cachingConfig(), planWithBlocks(100))
	for _, id := range []string{"a", "b"} {
		st := admit(t, s, Request{ID: id, PromptTokens: 200, OutputTokens: 2})
		if st.PrefillTokens != 200 || st.PrefixCacheHits != 0 || st.PrefixCacheQueries != 200 {
			t.Fatalf("%s: %+v", id, st)
		}
		runToEnd(t, s)
	}
}

func TestPrefixCacheDisabled(t *testing.T) {
	cfg := cachingConfig()
	cfg.EnablePrefixCaching = false
	s := NewScheduler(cfg, planWithBlocks(100))
	p := ids(1000, 200)
	for _, id := range []string{"a", "b"} {
		st := admit(t, s, Request{ID: id, PromptTokens: 200, OutputTokens: 2, Tokens: p})
		if st.PrefillTokens != 200 || st.PrefixCacheHits != 0 || st.PrefixCacheQueries != 0 {
			t.Fatalf("%s with caching off: %+v", id, st)
		}
		runToEnd(t, s)
	}
	if st := s.Stats(); st.PrefixCacheQueries != 0 || st.PrefixCacheHits != 0 {
		t.Errorf("caching off counted lookups: %+v", st)
	}
}

func TestAddRejectsTokenCountMismatch(t *testing.T) {
	s := NewScheduler(cachingConfig(), planWithBlocks(100))
	if err := s.Add(Request{ID: "a", PromptTokens: 5, OutputTokens: 1, Tokens: ids(0, 4)}); err == nil {
		t.Error("4 token ids for 5 prompt tokens accepted")
	}
}

func TestBlockHashChains(t *testing.T) {
	a, b := ids(0, 16), ids(16, 16)
	h1 := blockHash(hashRoot, a)
	if blockHash(hashRoot, a) != h1 || blockHash(hashRoot, b) == h1 {
		t.Fatal("hash not a function of the tokens")
	}
	// Same tokens after a different parent: a different block.
	if blockHash(h1, b) == blockHash(blockHash(hashRoot, b), b) {
		t.Fatal("hash ignores the parent")
	}
	// Order matters.
	rev := append([]int32(nil), a...)
	rev[0], rev[1] = rev[1], rev[0]
	if blockHash(hashRoot, rev) == h1 {
		t.Fatal("hash ignores token order")
	}
}

// BenchmarkStepPrefixCaching is BenchmarkScheduler's workload (~100
// requests of 200 in / 200 out in flight, one arrival every other step) with
// prefix caching off and on. "distinct": every prompt differs (the bench
// workload: hashing and caching cost, no hits); "shared128": prompts share
// their first 128 tokens (hits on 8 blocks each).
func BenchmarkStepPrefixCaching(b *testing.B) {
	for _, c := range []struct {
		name    string
		caching bool
		shared  int
	}{{"off", false, 0}, {"distinct", true, 0}, {"shared128", true, 128}} {
		b.Run(c.name, func(b *testing.B) {
			cfg := defaultConfig(128, 8192)
			cfg.EnablePrefixCaching = c.caching
			p, err := NewPlan(cfg)
			if err != nil {
				b.Fatal(err)
			}
			s := NewScheduler(cfg, p)
			reqs := make([]Request, 4096)
			for i := range reqs {
				toks := ids(1_000_000*(i+1), 200)
				copy(toks, ids(0, c.shared))
				reqs[i] = Request{ID: fmt.Sprint("r", i), PromptTokens: 200, OutputTokens: 200, Tokens: toks}
			}
			next := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if st := s.Stats(); st.Running+st.Waiting < 100 && i%2 == 0 {
					_ = s.Add(reqs[next%len(reqs)])
					next++
				}
				s.Step()
			}
		})
	}
}
