package engine

import (
	"errors"
	"fmt"
)

// ErrDuplicateID is returned by Add for an ID that is already queued or running.
var ErrDuplicateID = errors.New("request id already in the scheduler")

// seq is the scheduler's state of one request, following vLLM V1's Request:
// numTokens = prompt + emitted output; numComputed tokens have KV in cache.
// A step schedules numTokens−numComputed tokens (all, or a chunk); when
// numComputed reaches numTokens the step samples one new token.
type seq struct {
	id          string
	ref         int
	prompt      int
	output      int // tokens to produce in total
	emitted     int // tokens produced so far (kept across preemption)
	numComputed int
	blocks      []int32 // KV block ids held, in token order
	running     bool
	// scheduled is the number of tokens scheduled in the current step.
	scheduled int

	// Prefix caching (kvcache.go). tokens are the prompt's ids (nil: the
	// request is modelled as a prompt no other request shares); salt makes
	// the ids of such a prompt, and of every output token, unique to this
	// request. hashes are the chained hashes of its full blocks so far,
	// kept across preemption as vLLM's Request.block_hashes are;
	// numCached of its blocks are registered in the cache.
	tokens    []int32
	salt      uint64
	hashes    []uint64
	numCached int
	preempted bool // vLLM's num_preemptions > 0
}

func (q *seq) numTokens() int { return q.prompt + q.emitted }

// Scheduler is vLLM V1's scheduler over its KV cache manager, with
// automatic prefix caching when Config.EnablePrefixCaching is set. It is
// not safe for concurrent use.
type Scheduler struct {
	cfg       Config
	model     StepModel
	blockSize int
	kv        *kvCache
	maxSeqs   int
	budget    int
	salts     uint64 // source of per-request salts

	running []*seq
	waiting deque
	byID    map[string]*seq

	preemptions int
	prefix      prefixCounts

	// Reused between steps to avoid per-step allocation.
	scheduled []*seq
	tokens    []TokenEvent
	preempted []string
	pool      []*seq  // recycled seq structs
	hits      []int32 // prefix-cache hit blocks of the request being admitted
	blockToks []int32 // token ids of the block being hashed
}

// prefixCounts are vLLM's PrefixCacheStats (vllm/v1/metrics/stats.py), in
// tokens: a lookup made at admission records the request's num_tokens as
// queries and its cache-hit tokens as hits; a preempted request's lookup is
// kept apart (PrefixCacheStats.record's preempted branch), and only the
// others reach vllm:prefix_cache_queries / vllm:prefix_cache_hits.
type prefixCounts struct {
	queries, hits                   int64
	preemptedQueries, preemptedHits int64
}

// NewScheduler returns a scheduler for cfg with the KV pool of plan. cfg
// must be the configuration plan was made from (NewPlan validated it).
func NewScheduler(cfg Config, plan Plan) *Scheduler {
	sm, err := NewStepModel(cfg)
	if err != nil {
		// Unknown GPU or model: NewPlan would have refused cfg. Keep the
		// scheduler usable with a zero-cost model rather than panic.
		sm = StepModel{}
	}
	return &Scheduler{
		cfg:       cfg,
		model:     sm,
		blockSize: max(cfg.BlockSize, 1),
		kv:        newKVCache(plan.NumBlocks, cfg.EnablePrefixCaching),
		maxSeqs:   cfg.MaxNumSeqs,
		budget:    cfg.MaxNumBatchedTokens,
		byID:      make(map[string]*seq),
	}
}

// StepModel returns the step-time model the scheduler uses.
func (s *Scheduler) StepModel() StepModel { return s.model }

// blocksFor is the number of blocks that hold n tokens.
func (s *Scheduler) blocksFor(n int) int { return (n + s.blockSize - 1) / s.blockSize }

// Add queues r at the back of the waiting queue (FCFS). It refuses
// requests that could never run: longer than max_model_len, or needing more
// KV blocks than the whole pool.
func (s *Scheduler) Add(r Request) error {
	switch {
	case r.PromptTokens <= 0:
		return fmt.Errorf("request %q: prompt tokens must be > 0, got %d", r.ID, r.PromptTokens)
	case r.OutputTokens <= 0:
		return fmt.Errorf("request %q: output tokens must be > 0, got %d", r.ID, r.OutputTokens)
	// Compared as a difference: a huge OutputTokens would wrap the sum
	// negative and pass.
	case r.OutputTokens > s.cfg.MaxModelLen-r.PromptTokens:
		return fmt.Errorf("request %q: %d prompt + %d output tokens exceed max_model_len %d",
			r.ID, r.PromptTokens, r.OutputTokens, s.cfg.MaxModelLen)
	case s.blocksFor(r.PromptTokens+r.OutputTokens-1) > s.kv.size():
		return fmt.Errorf("request %q: needs %d KV blocks, the pool has %d",
			r.ID, s.blocksFor(r.PromptTokens+r.OutputTokens-1), s.kv.size())
	case r.Tokens != nil && len(r.Tokens) != r.PromptTokens:
		return fmt.Errorf("request %q: %d prompt token ids for %d prompt tokens", r.ID, len(r.Tokens), r.PromptTokens)
	}
	if _, dup := s.byID[r.ID]; dup {
		return fmt.Errorf("add %q: %w", r.ID, ErrDuplicateID)
	}
	var q *seq
	if n := len(s.pool); n > 0 {
		q = s.pool[n-1]
		s.pool = s.pool[:n-1]
		// Keep the slices' storage: a recycled seq allocates nothing.
		*q = seq{blocks: q.blocks[:0], hashes: q.hashes[:0]}
	} else {
		q = new(seq)
	}
	q.id, q.ref, q.prompt, q.output = r.ID, r.Ref, r.PromptTokens, r.OutputTokens
	q.tokens = r.Tokens
	s.salts++
	q.salt = mix64(s.salts)
	s.byID[r.ID] = q
	s.waiting.pushBack(q)
	return nil
}

// Abort drops request id wherever it is and frees its blocks at once. It
// reports whether the request was known.
func (s *Scheduler) Abort(id string) bool {
	q, ok := s.byID[id]
	if !ok {
		return false
	}
	if q.running {
		for i, r := range s.running {
			if r == q {
				s.running = append(s.running[:i], s.running[i+1:]...)
				break
			}
		}
	} else {
		s.waiting.remove(q)
	}
	s.release(q)
	return true
}

// release frees q's blocks and forgets it.
func (s *Scheduler) release(q *seq) {
	s.freeBlocks(q)
	delete(s.byID, q.id)
	q.tokens = nil // the caller's slice: do not keep it alive in the pool
	s.pool = append(s.pool, q)
}

// freeBlocks returns q's blocks to the pool, tail first
// (SingleTypeKVCacheManager.free); cached ones keep their hashes.
func (s *Scheduler) freeBlocks(q *seq) {
	s.kv.free(q.blocks)
	q.blocks = q.blocks[:0]
	q.numCached = 0
}

// allocate grows q's blocks to hold numComputed+n tokens; false if the pool
// is short (nothing is allocated then). With caching on, the blocks that
// these tokens fill are then cached at once, as allocate_slots does
// (before they are computed: a request admitted later in the same step can
// hit them).
func (s *Scheduler) allocate(q *seq, n int) bool {
	need := s.blocksFor(q.numComputed+n) - len(q.blocks)
	if need > s.kv.numFree {
		return false
	}
	for ; need > 0; need-- {
		q.blocks = append(q.blocks, s.kv.pop())
	}
	if s.kv.caching {
		s.cacheBlocks(q, q.numComputed+n)
	}
	return true
}

// cacheBlocks registers q's full blocks among its first numTokens tokens
// (BlockPool.cache_full_blocks via KVCacheManager.allocate_slots).
func (s *Scheduler) cacheBlocks(q *seq, numTokens int) {
	full := numTokens / s.blockSize
	if full <= q.numCached {
		return
	}
	s.hashBlocks(q, full)
	for i := q.numCached; i < full; i++ {
		s.kv.insert(q.blocks[i], q.hashes[i])
	}
	q.numCached = full
}

// hashBlocks extends q.hashes to its first n full blocks.
func (s *Scheduler) hashBlocks(q *seq, n int) {
	bs := s.blockSize
	if cap(s.blockToks) < bs {
		s.blockToks = make([]int32, bs)
	}
	toks := s.blockToks[:bs]
	for i := len(q.hashes); i < n; i++ {
		parent := hashRoot
		if i > 0 {
			parent = q.hashes[i-1]
		}
		for k := range toks {
			toks[k] = q.tokenID(i*bs + k)
		}
		q.hashes = append(q.hashes, blockHash(parent, toks))
	}
}

// tokenID is the id of token j of q: a prompt id the caller gave, or a
// synthetic id unique to this request (a prompt given only as a length,
// and every output token: the engine does not know what the model wrote).
func (q *seq) tokenID(j int) int32 {
	if j < len(q.tokens) {
		return q.tokens[j]
	}
	// A Weyl sequence from a random salt: distinct for each j, and cheap
	// (blockHash mixes the ids).
	return int32((q.salt + uint64(j)*0x9e3779b97f4a7c15) >> 33)
}

// lookupPrefix finds q's longest run of cached leading blocks
// (KVCacheManager.get_computed_blocks → find_longest_cache_hit) into
// s.hits. At most num_tokens−1 tokens can hit: the last token must be
// computed to sample from its logits, and as hits are whole blocks a
// prompt of k full blocks hits at most k−1 of them.
func (s *Scheduler) lookupPrefix(q *seq) {
	s.hits = s.hits[:0]
	maxBlocks := (q.numTokens() - 1) / s.blockSize
	if maxBlocks <= 0 {
		return
	}
	s.hashBlocks(q, maxBlocks)
	for i := 0; i < maxBlocks; i++ {
		b := s.kv.lookup(q.hashes[i])
		if b < 0 {
			break
		}
		s.hits = append(s.hits, b)
	}
}

// preemptNewest preempts the last running request (the most recently
// admitted): its blocks are freed, its computed tokens reset so that it
// recomputes prompt and emitted output, and it goes to the front of waiting.
func (s *Scheduler) preemptNewest() *seq {
	n := len(s.running) - 1
	q := s.running[n]
	s.running[n] = nil
	s.running = s.running[:n]
	s.freeBlocks(q)
	q.preempted = true
	q.numComputed = 0
	q.scheduled = 0
	q.running = false
	s.waiting.pushFront(q)
	s.preemptions++
	s.preempted = append(s.preempted, q.id)
	return q
}

// Step runs one scheduler iteration and returns what ran and its modelled
// GPU time. The returned Step's Tokens and Preempted slices are reused by
// the next call to Step: copy them if they must outlive it.
func (s *Scheduler) Step() Step {
	s.scheduled = s.scheduled[:0]
	s.tokens = s.tokens[:0]
	s.preempted = s.preempted[:0]
	budget := s.budget
	var st Step

	// 1. Running requests, in order: a decode token or the next prefill chunk.
	for i := 0; i < len(s.running) && budget > 0; i++ {
		q := s.running[i]
		n := min(q.numTokens()-q.numComputed, budget)
		if n <= 0 {
			continue
		}
		scheduled := true
		for !s.allocate(q, n) {
			victim := s.preemptNewest()
			if victim == q {
				scheduled = false
				break
			}
		}
		if !scheduled {
			break
		}
		q.scheduled = n
		budget -= n
		s.scheduled = append(s.scheduled, q)
	}

	// 2. Waiting requests, FCFS, but none in a step that preempted: the
	// memory was just shown to be short.
	if len(s.preempted) == 0 {
		for budget > 0 && s.waiting.len() > 0 && len(s.running) < s.maxSeqs {
			q := s.waiting.front()
			// A waiting request holds nothing (numComputed is 0): look
			// its prefix up in the cache.
			s.hits = s.hits[:0]
			if s.kv.caching {
				s.lookupPrefix(q)
			}
			hit := len(s.hits) * s.blockSize
			n := q.numTokens() - hit
			if n > budget {
				if !s.cfg.EnableChunkedPrefill {
					break // without chunked prefill the whole prompt must fit
				}
				n = budget
			}
			// Hit blocks nobody holds leave the free queue too
			// (get_num_blocks_to_allocate counts them).
			need := s.blocksFor(hit+n) - len(s.hits)
			for _, b := range s.hits {
				if s.kv.refCnt[b] == 0 {
					need++
				}
			}
			if need > s.kv.numFree {
				break
			}
			for _, b := range s.hits {
				s.kv.touch(b)
				q.blocks = append(q.blocks, b)
			}
			q.numCached = len(s.hits)
			q.numComputed = hit
			s.allocate(q, n) // cannot fail: checked above
			if s.kv.caching {
				// Recorded at admission, so a lookup that did not lead
				// to scheduling is not counted (Scheduler.schedule →
				// KVCacheManager.record_prefix_cache_stats; earlier V1
				// releases counted inside get_computed_blocks, at every
				// lookup of a request blocked at the head of waiting).
				if q.preempted {
					s.prefix.preemptedQueries += int64(q.numTokens())
					s.prefix.preemptedHits += int64(hit)
				} else {
					s.prefix.queries += int64(q.numTokens())
					s.prefix.hits += int64(hit)
					st.PrefixCacheQueries += q.numTokens()
					st.PrefixCacheHits += hit
				}
			}
			s.waiting.popFront()
			q.running = true
			q.scheduled = n
			budget -= n
			s.running = append(s.running, q)
			s.scheduled = append(s.scheduled, q)
		}
	}

	// 3. Execute: advance computed tokens, sample where a prefill (or
	// recompute) completes or a decode ran, finish what is done.
	finished := false
	for _, q := range s.scheduled {
		n := q.scheduled
		q.scheduled = 0
		st.ContextTokens += q.numComputed + n
		if q.numTokens()-q.numComputed == 1 && q.emitted > 0 && n == 1 {
			st.DecodeSeqs++
		} else {
			st.PrefillTokens += n
		}
		q.numComputed += n
		if q.numComputed == q.numTokens() {
			q.emitted++
			done := q.emitted >= q.output
			s.tokens = append(s.tokens, TokenEvent{ID: q.id, Ref: q.ref, Index: q.emitted - 1, Finished: done})
			if done {
				q.running = false
				finished = true
			}
		}
	}
	if finished {
		// Compact running in place, keeping order, and free the finished.
		kept := s.running[:0]
		for _, q := range s.running {
			if q.running {
				kept = append(kept, q)
			} else {
				s.release(q)
			}
		}
		clear(s.running[len(kept):])
		s.running = kept
	}

	st.Tokens = s.tokens
	st.Preempted = s.preempted
	st.Duration = s.model.Duration(st.PrefillTokens, st.DecodeSeqs, st.ContextTokens)
	return st
}

// HasWork reports whether anything is running or waiting.
func (s *Scheduler) HasWork() bool { return len(s.running) > 0 || s.waiting.len() > 0 }

// Stats returns the scheduler's state after the last step.
func (s *Scheduler) Stats() Stats {
	return Stats{
		Running:     len(s.running),
		Waiting:     s.waiting.len(),
		UsedBlocks:  s.kv.size() - s.kv.numFree,
		TotalBlocks: s.kv.size(),
		Preemptions: s.preemptions,

		PrefixCacheQueries:          s.prefix.queries,
		PrefixCacheHits:             s.prefix.hits,
		PreemptedPrefixCacheQueries: s.prefix.preemptedQueries,
		PreemptedPrefixCacheHits:    s.prefix.preemptedHits,
	}
}

// deque is a FIFO that also takes items at the front (preempted requests).
// It is a ring buffer so that neither end allocates in steady state.
type deque struct {
	buf  []*seq
	head int
	n    int
}

func (d *deque) len() int { return d.n }

func (d *deque) grow() {
	if d.n < len(d.buf) {
		return
	}
	nb := make([]*seq, max(16, 2*len(d.buf)))
	for i := 0; i < d.n; i++ {
		nb[i] = d.buf[(d.head+i)%len(d.buf)]
	}
	d.buf, d.head = nb, 0
}

func (d *deque) pushBack(q *seq) {
	d.grow()
	d.buf[(d.head+d.n)%len(d.buf)] = q
	d.n++
}

func (d *deque) pushFront(q *seq) {
	d.grow()
	d.head = (d.head - 1 + len(d.buf)) % len(d.buf)
	d.buf[d.head] = q
	d.n++
}

func (d *deque) front() *seq { return d.buf[d.head] }

func (d *deque) at(i int) *seq { return d.buf[(d.head+i)%len(d.buf)] }

func (d *deque) popFront() *seq {
	q := d.buf[d.head]
	d.buf[d.head] = nil
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	return q
}

// remove deletes q, keeping the others' order (O(n): aborts are rare).
func (d *deque) remove(q *seq) {
	for i := 0; i < d.n; i++ {
		if d.at(i) != q {
			continue
		}
		for j := i; j < d.n-1; j++ {
			d.buf[(d.head+j)%len(d.buf)] = d.at(j + 1)
		}
		d.buf[(d.head+d.n-1)%len(d.buf)] = nil
		d.n--
		return
	}
}
