package runfile

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteSummary writes the human summary of a run file, live or offline.
func WriteSummary(w io.Writer, rf RunFile) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	c := rf.Config
	if sim := rf.Sim; sim != nil {
		fmt.Fprintf(tw, "llmlab sim run (offline, virtual time)  profile %s  model %s  gpu %s\n", rf.Profile, c.Model, sim.GPU)
		fmt.Fprintf(tw, "engine  max_model_len %d, max_num_seqs %d, max_num_batched_tokens %d, gpu_memory_utilization %.2f; KV cache %d tokens (%.2fx)\n",
			sim.MaxModelLen, sim.MaxNumSeqs, sim.MaxNumBatchedTokens, sim.GPUMemoryUtilization, sim.KVTokens, sim.MaxConcurrency)
	} else {
		fmt.Fprintf(tw, "llmlab bench  %s  profile %s  model %s\n", c.URL, rf.Profile, c.Model)
	}
	fmt.Fprintf(tw, "workload  %s: %s, %d in / %d out tokens, prompt %s, stream %v\n",
		rf.Workload.Name, rf.Workload.Endpoint, rf.Workload.InputTokens, rf.Workload.OutputTokens, rf.Workload.Prompt, rf.Workload.Stream)
	if rf.FindMax != nil {
		writeFindMax(tw, rf)
	} else if c.Concurrency > 0 {
		fmt.Fprintf(tw, "load  closed loop of %d clients for %gs (ramp %gs, steady window %gs–%gs)\n",
			c.Concurrency, c.DurationS, c.RampS, c.WarmupS, c.DurationS-c.CooldownS)
	} else {
		fmt.Fprintf(tw, "load  %s arrivals at %.3g req/s for %gs (ramp %gs, steady window %gs–%gs)\n",
			c.Arrival, c.Rate, c.DurationS, c.RampS, c.WarmupS, c.DurationS-c.CooldownS)
	}
	if rf.Results != nil {
		writeResult(tw, rf)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	return nil
}

func writeResult(tw *tabwriter.Writer, rf RunFile) {
	r := rf.Results
	ms := func(s float64) string { return fmt.Sprintf("%.1f", s*1e3) }
	fmt.Fprintf(tw, "\nsteady window  %gs–%gs: %d requests, %d completed, %d failed (error rate %.3f%%)\n",
		r.SteadyStartS, r.SteadyEndS, r.Requests, r.Completed, r.Failed, 100*r.ErrorRate)
	fmt.Fprintf(tw, "throughput  %.2f req/s sustained (%.2f overall), goodput %.2f req/s (%.1f%% within %.3gs), %.0f output tok/s\n",
		r.RPS, r.RPSOverall, r.GoodputRPS, 100*r.GoodputFrac, rf.SLO.P95E2ESeconds, r.OutputTokenRate)
	fmt.Fprintf(tw, "send rate  scheduled %.2f/s, achieved %.2f/s\n", r.ScheduledRate, r.AchievedRate)
	if rf.Sim != nil {
		fmt.Fprintf(tw, "engine  %d preemptions, peak %d running / %d waiting, peak KV usage %.1f%%, %d steps, %.1fs simulated, %d unfinished at the drain cap\n",
			r.Preemptions, r.PeakRunning, r.PeakWaiting, 100*r.PeakKVUsage, r.Steps, r.VirtualS, r.RequestsUnfinished)
	}
	fmt.Fprintln(tw, "\nms\tp50\tp95\tp99\tmax\tmean")
	rows := []struct {
		name                    string
		p50, p95, p99, max, avg float64
	}{
		{"e2e", r.E2EP50, r.E2EP95, r.E2EP99, r.E2EMax, r.E2EMean},
		{"ttft", r.TTFTP50, r.TTFTP95, r.TTFTP99, r.TTFTMax, r.TTFTMean},
		{"tpot", r.TPOTP50, r.TPOTP95, r.TPOTP99, r.TPOTMax, r.TPOTMean},
		{"itl", r.ITLP50, r.ITLP95, r.ITLP99, r.ITLMax, r.ITLMean},
		{"send lag", r.SendLagP50, r.SendLagP95, r.SendLagP99, r.SendLagMax, r.SendLagMean},
	}
	for _, x := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.name, ms(x.p50), ms(x.p95), ms(x.p99), ms(x.max), ms(x.avg))
	}
	if len(r.ErrorsTotal) > 0 {
		fmt.Fprintf(tw, "\nerrors (whole run)  %s\n", classList(r.ErrorsTotal))
	}
	if r.CanceledTotal > 0 {
		fmt.Fprintf(tw, "canceled  %d (run interrupted)\n", r.CanceledTotal)
	}
	if len(r.GeneratorErrorsTotal) > 0 {
		fmt.Fprintf(tw, "generator errors (not sent; not the server's, not in the error rate)  %s\n", classList(r.GeneratorErrorsTotal))
	}
	verdict := "NOT MET"
	if r.SLOMet {
		verdict = "MET"
	}
	if r.Invalid {
		verdict = "NOT JUDGED (invalid run)"
	}
	fmt.Fprintf(tw, "\nSLO (p95 e2e ≤ %.3gs, error rate ≤ %.3g%%): %s — p95 %.3fs, error rate %.3f%%\n",
		rf.SLO.P95E2ESeconds, 100*rf.SLO.MaxErrorRate, verdict, r.E2EP95, 100*r.ErrorRate)
	if r.Invalid {
		fmt.Fprintf(tw, "INVALID RUN: the generator fell behind, so this measures the load generator, not the server: %s\n", r.InvalidReason)
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(tw, "WARNING: %s\n", w)
	}
}

func writeFindMax(tw *tabwriter.Writer, rf RunFile) {
	fm := rf.FindMax
	fmt.Fprintf(tw, "find-max  %d steps of %gs (at most %d)\n\n", len(fm.Steps), fm.StepDurationS, fm.MaxSteps)
	fmt.Fprintln(tw, "step\trate\trps\tgoodput\te2e p95 s\tttft p95 s\terror rate\tlag p99 ms\tresult")
	for _, s := range fm.Steps {
		r := s.Result
		v := "fail"
		switch {
		case s.Pass:
			v = "pass"
		case r.Interrupted:
			v = "interrupted" // neither pass nor fail: the search did not use it
		case r.Invalid:
			v = "fail (invalid: generator behind)"
		case r.GeneratorBehind:
			v = "fail (generator behind)"
		}
		fmt.Fprintf(tw, "%d\t%.3g\t%.2f\t%.2f\t%.3f\t%.3f\t%.3f%%\t%.1f\t%s\n",
			s.Step, s.Rate, r.RPS, r.GoodputRPS, r.E2EP95, r.TTFTP95, 100*r.ErrorRate, r.SendLagP99*1e3, v)
	}
	switch {
	case fm.MaxRate == 0:
		fmt.Fprintln(tw, "\nmax rate: none of the rates tried met the SLO")
	case fm.FailRate == 0:
		fmt.Fprintf(tw, "\nmax rate: ≥ %.3g req/s (%.2f req/s sustained); no rate tried failed\n", fm.MaxRate, fm.MaxRPS)
	default:
		fmt.Fprintf(tw, "\nmax rate: %.3g req/s (%.2f req/s sustained); %.3g req/s failed\n", fm.MaxRate, fm.MaxRPS, fm.FailRate)
	}
	if fm.GeneratorLimited {
		fmt.Fprintln(tw, "WARNING: a step failed because the generator fell behind; the maximum may be this machine's, not the server's")
	}
	if rf.Results != nil {
		fmt.Fprintf(tw, "\nat the max rate (step of %gs):\n", fm.StepDurationS)
	}
}

func classList(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
