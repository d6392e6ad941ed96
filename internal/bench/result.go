package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/slo"
)

// result turns the recorder into a Result.
func (r *runner) result(sched []time.Duration, stoppedAt time.Duration) Result {
	rec := r.rec
	rec.mu.Lock()
	defer rec.mu.Unlock()
	from, to := rec.steadyFrom, rec.steadyTo
	if stoppedAt < to {
		to = max(stoppedAt, from) // interrupted: the window ends early, possibly empty
	}
	window := (to - from).Seconds()
	per := func(n int64) float64 {
		if window <= 0 {
			return 0
		}
		return float64(n) / window
	}
	var scheduled int64
	for _, at := range sched {
		if at >= from && at < to {
			scheduled++
		}
	}
	res := Result{
		Model:    r.cfg.Model,
		Requests: rec.requests, Completed: rec.completed, Failed: rec.requests - rec.completed,
		Errors:        copyClasses(rec.errors),
		ScheduledRate: per(scheduled),
		AchievedRate:  per(rec.sentInWindow),
		InputTokens:   rec.promptTokens, OutputTokens: rec.outputTokens,
		GeneratorErrors: copyClasses(rec.genErrors), GeneratorErrorsTotal: copyClasses(rec.genErrorsAll),
		SentTotal: rec.sentAll - rec.genAll, CompletedTotal: rec.doneAll, FailedTotal: rec.failedAll,
		CanceledTotal: rec.canceled, ErrorsTotal: copyClasses(rec.errorsAll),
		DurationS:    stoppedAt.Seconds(),
		SteadyStartS: from.Seconds(), SteadyEndS: to.Seconds(), SteadyWindowS: window,
		WallS:    rec.lastEnd.Seconds(),
		Warnings: []string{},
	}
	if rec.lastEnd > 0 {
		res.RPSOverall = float64(rec.doneAll) / rec.lastEnd.Seconds()
	}
	if rec.requests > 0 {
		res.ErrorRate = float64(res.Failed) / float64(rec.requests)
	}
	res.RPS = runfile.SustainedRPS(rec.completed, rec.firstEnd.Seconds(), rec.lastEndSteady.Seconds(), window)
	if rec.completed > 0 {
		res.GoodputFrac = float64(rec.good) / float64(rec.completed)
		res.GoodputRPS = res.RPS * res.GoodputFrac
	}
	if rec.completed > 0 {
		res.OutputTokensMean = float64(rec.outputTokens) / float64(rec.completed)
		res.OutputTokenRate = res.OutputTokensMean * res.RPS
	}
	res.Latencies = slo.NewLatencies(dist(rec.e2e), dist(rec.ttft), dist(rec.tpot), dist(rec.itl))
	d := dist(rec.lag)
	res.SendLagP50, res.SendLagP95, res.SendLagP99, res.SendLagMax, res.SendLagMean = d.P50, d.P95, d.P99, d.Max, d.Mean

	if lagP99 := time.Duration(d.P99 * float64(time.Second)); lagP99 > r.cfg.LagThreshold {
		res.GeneratorBehind = true
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"generator fell behind: send lag p99 %.1f ms > %.1f ms; latencies include this lag", d.P99*1e3, r.cfg.LagThreshold.Seconds()*1e3))
	}
	if res.ScheduledRate > 0 && res.AchievedRate < 0.95*res.ScheduledRate {
		res.GeneratorBehind = true
		res.Warnings = append(res.Warnings, fmt.Sprintf(
			"generator fell behind: achieved send rate %.2f/s < 95%% of scheduled %.2f/s", res.AchievedRate, res.ScheduledRate))
	}
	// Invalid only by requests not sent: the achieved rate above also
	// moves with requests sent just across a window edge, which on a short
	// run is not the generator failing to offer the load.
	if n := sumClasses(rec.genErrors); n > 0 {
		res.GeneratorBehind = true
		res.Invalid = true
		reason := fmt.Sprintf("the generator failed to send %d requests of the steady window (%s)", n, classSummary(rec.genErrors))
		if rec.genErrors[ClassGenPool] > 0 {
			reason += fmt.Sprintf("; all %d connections were busy: raise --max-conns", r.cfg.MaxConns)
		}
		res.InvalidReason = reason
	}
	if rec.completed == 0 {
		res.Warnings = append(res.Warnings, "no request of the steady window completed")
	}
	// An invalid run has no verdict: the server was not offered the load.
	// Its own figures above leave the generator's errors out.
	res.SLOMet = !res.Invalid && rec.completed > 0 && r.cfg.SLO.SLO.Met(res.E2EP95, res.ErrorRate)
	return res
}

func sumClasses(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// classSummary lists classes as "a=1, b=2" in a stable order.
func classSummary(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
