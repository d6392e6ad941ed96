package engine

// kvCache is vLLM V1's KV block pool with automatic prefix caching, reduced
// to what changes the numbers: block identities, reference counts, block
// hashes, the LRU free queue and the hash → block map. It follows
//
//   - vllm/v1/core/block_pool.py (BlockPool): get_new_blocks pops from the
//     head of the free queue and, with caching on, evicts the popped block's
//     hash (_maybe_evict_cached_block); touch takes a hit block with
//     ref_cnt 0 out of the free queue and increments its count; free_blocks
//     decrements and appends blocks that reach 0 to the tail of the queue,
//     keeping their hash, so they stay hittable until popped; cached blocks
//     are not de-duplicated (cache_full_blocks: two blocks may hold one hash,
//     get_cached_block returns the first);
//   - vllm/v1/core/kv_cache_utils.py (FreeKVCacheBlockQueue): a doubly
//     linked list, ordered by block id at start, O(1) remove from the middle;
//   - vllm/v1/core/single_type_kv_cache_manager.py (free): a request's
//     blocks are freed in reverse order, so the tail of a prompt is evicted
//     before its shared head.
//
// Usage is (blocks − free) / blocks as BlockPool.get_usage: a cached block
// nobody references is free. vLLM also reserves one "null block"
// (BlockPool.__init__ pops it from the free queue) for sliding-window
// layers; the scheduler has never modelled it and this file keeps it so.
//
// All state is in flat slices indexed by block id, allocated once: nothing
// here allocates per step except the hash map's own growth.
type kvCache struct {
	caching bool
	refCnt  []int32
	hash    []uint64 // block hash; 0: none (hashes are never 0, see blockHash)
	// prev/next link the free queue; index n (the pool size) is the
	// sentinel: next[n] is the head (evicted first), prev[n] the tail.
	prev, next []int32
	dupNext    []int32          // next block holding the same hash, in insertion order; -1: none
	cached     map[uint64]int32 // hash → first block holding it
	numFree    int
}

func newKVCache(n int, caching bool) *kvCache {
	c := &kvCache{
		caching: caching,
		refCnt:  make([]int32, n),
		hash:    make([]uint64, n),
		prev:    make([]int32, n+1),
		next:    make([]int32, n+1),
		dupNext: make([]int32, n),
		numFree: n,
	}
	if caching {
		c.cached = make(map[uint64]int32, n)
	}
	// Free queue ordered by block id, as FreeKVCacheBlockQueue.__init__.
	for i := 0; i <= n; i++ {
		c.next[i] = int32((i + 1) % (n + 1))
		c.prev[i] = int32((i + n) % (n + 1))
	}
	for i := range c.dupNext {
		c.dupNext[i] = -1
	}
	return c
}

func (c *kvCache) size() int { return len(c.refCnt) }

func (c *kvCache) unlink(b int32) {
	p, nx := c.prev[b], c.next[b]
	c.next[p] = nx
	c.prev[nx] = p
	c.numFree--
}

// pop takes the block at the head of the free queue (least recently freed)
// with ref count 1, dropping any hash it still holds. The caller checks
// numFree first.
func (c *kvCache) pop() int32 {
	b := c.next[c.size()]
	c.unlink(b)
	if c.hash[b] != 0 {
		c.evict(b)
	}
	c.refCnt[b] = 1
	return b
}

// touch adds a reference to a cached block hit by a request, taking it out
// of the free queue if nobody held it.
func (c *kvCache) touch(b int32) {
	if c.refCnt[b] == 0 {
		c.unlink(b)
	}
	c.refCnt[b]++
}

// free drops one reference to each of blocks, last block first; blocks that
// nobody holds go to the tail of the free queue with their hash kept.
func (c *kvCache) free(blocks []int32) {
	n := int32(c.size())
	for i := len(blocks) - 1; i >= 0; i-- {
		b := blocks[i]
		c.refCnt[b]--
		if c.refCnt[b] > 0 {
			continue
		}
		tail := c.prev[n]
		c.next[tail] = b
		c.prev[b] = tail
		c.next[b] = n
		c.prev[n] = b
		c.numFree++
	}
}

// lookup returns the first block cached under h, or -1.
func (c *kvCache) lookup(h uint64) int32 {
	if b, ok := c.cached[h]; ok {
		return b
	}
	return -1
}

// insert caches block b under h. A block already cached under h stays first
// (vLLM does not de-duplicate, so that block tables stay append-only).
func (c *kvCache) insert(b int32, h uint64) {
	c.hash[b] = h
	c.dupNext[b] = -1
	first, ok := c.cached[h]
	if !ok {
		c.cached[h] = b
		return
	}
	for c.dupNext[first] >= 0 {
		first = c.dupNext[first]
	}
	c.dupNext[first] = b
}

// evict removes b's hash from the cache (the block is being reused).
func (c *kvCache) evict(b int32) {
	h := c.hash[b]
	c.hash[b] = 0
	first := c.cached[h]
	switch {
	case first == b && c.dupNext[b] < 0:
		delete(c.cached, h)
	case first == b:
		c.cached[h] = c.dupNext[b]
	default:
		for c.dupNext[first] != b {
			first = c.dupNext[first]
		}
		c.dupNext[first] = c.dupNext[b]
	}
	c.dupNext[b] = -1
}

// Block hashing, after vllm/v1/core/kv_cache_utils.py hash_block_tokens and
// get_request_block_hasher: block i of a request is identified by a hash of
// (hash of block i−1, the block's token ids), the first block chained from
// a fixed root (vLLM's NONE_HASH, random per process unless PYTHONHASHSEED
// is set). Only full blocks are hashed. vLLM uses SHA-256 (or Python's
// hash) over the tuple; a 64-bit mix of the ids is enough here: a false hit
// needs a 64-bit collision.
const hashRoot uint64 = 0x6c6c6d6c61622d31 // "llmlab-1"

// blockHash chains the hash of one full block of token ids to parent:
// FNV-1a over the 32-bit ids, then one full mix so that nearby parents and
// ids spread over all 64 bits.
func blockHash(parent uint64, ids []int32) uint64 {
	h := parent
	for _, id := range ids {
		h = (h ^ uint64(uint32(id))) * 0x100000001b3
	}
	h = mix64(h ^ uint64(len(ids)))
	if h == 0 {
		h = 1 // 0 means "no hash" in kvCache
	}
	return h
}

// mix64 is splitmix64's finaliser: a strong, allocation-free 64-bit mixer.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
