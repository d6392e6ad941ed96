package offline

import (
	"math"

	"github.com/llmlab/llmlab/internal/slo"
)

// summarize returns the exact p50/p95/p99/max and mean of xs (reordering
// it); empty xs gives zeros.
func summarize(xs []float64) slo.Dist {
	if len(xs) == 0 {
		return slo.Dist{}
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	q := quantiles(xs, 0.5, 0.95, 0.99, 1)
	return slo.Dist{P50: q[0], P95: q[1], P99: q[2], Max: q[3], Mean: sum / float64(len(xs))}
}

// quantiles returns the exact nearest-rank quantiles ps (ascending, in
// (0, 1]) of xs: the smallest x with at least p·n samples ≤ x. It reorders
// xs in place. Selection is O(n) per quantile rather than a full sort,
// because a 10-minute run has millions of inter-token gaps. Empty xs gives
// zeros.
func quantiles(xs []float64, ps ...float64) []float64 {
	out := make([]float64, len(ps))
	if len(xs) == 0 {
		return out
	}
	lo := 0
	for i, p := range ps {
		k := int(math.Ceil(p*float64(len(xs)))) - 1
		k = min(max(k, lo), len(xs)-1)
		selectK(xs, lo, len(xs)-1, k)
		out[i] = xs[k]
		// Everything before k is ≤ xs[k]: later (larger) ranks need only
		// look from k on.
		lo = k
	}
	return out
}

// selectK partially orders xs[lo..hi] so that xs[k] holds the value of rank
// k, everything before it is ≤ and everything after it ≥ (Hoare's
// quickselect with a median-of-three pivot).
func selectK(xs []float64, lo, hi, k int) {
	for hi > lo {
		mid := lo + (hi-lo)/2
		if xs[mid] < xs[lo] {
			xs[mid], xs[lo] = xs[lo], xs[mid]
		}
		if xs[hi] < xs[lo] {
			xs[hi], xs[lo] = xs[lo], xs[hi]
		}
		if xs[hi] < xs[mid] {
			xs[hi], xs[mid] = xs[mid], xs[hi]
		}
		pivot := xs[mid]
		i, j := lo, hi
		for i <= j {
			for xs[i] < pivot {
				i++
			}
			for xs[j] > pivot {
				j--
			}
			if i <= j {
				xs[i], xs[j] = xs[j], xs[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}
