// Package tune is `llmlab tune`: a grid search over engine arguments for the
// highest request rate meeting the SLO. Each point runs a real worker
// process through internal/supervisor (the start path of `llmlab serve`),
// drives it with the lab's one find-max (internal/search over bench.Run),
// confirms the maximum with repeated runs and takes the median. A point
// whose worker runs out of memory at start is recorded with the worker's
// own error line, and the points needing more memory are skipped; a
// latency blow-up ends its row. With a predictor (the offline simulator)
// only the most promising points are measured live. The state is the tune
// file (internal/runfile), written after every point, so a run resumes.
package tune

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/llmlab/llmlab/internal/bench"
	"github.com/llmlab/llmlab/internal/profile"
	"github.com/llmlab/llmlab/internal/runfile"
	"github.com/llmlab/llmlab/internal/search"
	"github.com/llmlab/llmlab/internal/supervisor"
)

// Prediction is the offline simulator's answer for a point.
type Prediction struct {
	MaxRate float64
	// E2EP95 is the p95 at MaxRate: among points of the same predicted
	// maximum, the one with the lower p95 has more headroom.
	E2EP95 float64
	Starts bool
}

// Options configure a tune. The tune file holds the settings that must
// stay the same across --resume (runfile.TuneConfig).
type Options struct {
	// Profile is the base profile; each point overrides its engine args.
	Profile    profile.Profile
	Executable string
	// WorkerArgs are appended to every worker's command line.
	WorkerArgs     []string
	StartupTimeout time.Duration
	// Bench is the load template: scenario, SLO, timeout, header, client.
	Bench   bench.Config
	RunsDir string
	// Predict ranks a point offline (required with settings.predict).
	Predict func(runfile.EngineArgs) (Prediction, error)
	// Progress receives a line per probe; Logger the supervisor's logs.
	Progress io.Writer
	Logger   *slog.Logger
	// MetricsInterval is the /metrics polling period (default 250ms).
	MetricsInterval time.Duration
}

// NewFile returns the initial tune file for a grid.
func NewFile(p profile.Profile, points []runfile.EngineArgs, set runfile.TuneConfig, sloRec runfile.SLORecord) *runfile.TuneFile {
	now := time.Now().UTC()
	tf := &runfile.TuneFile{
		SchemaVersion: runfile.TuneSchemaVersion, Kind: runfile.KindTune, CreatedAt: now, UpdatedAt: now,
		Profile: p.Name, Engine: p.Engine, Model: p.ModelName(), GPU: p.Sim.GPU, Calibration: p.Sim.Calibration,
		BaseArgs: runfile.EngineArgs{
			MaxModelLen: p.EngineArgs.MaxModelLen, MaxNumSeqs: p.EngineArgs.MaxNumSeqs,
			MaxNumBatchedTokens: p.EngineArgs.MaxNumBatchedTokens, GPUMemoryUtilization: p.EngineArgs.GPUMemoryUtilization,
		},
		SLO: sloRec, Settings: set, Environment: runfile.CurrentEnvironment(), Best: -1,
	}
	if p.Engine == profile.EngineVLLM {
		tf.GPU, tf.Calibration = "", ""
	}
	for _, a := range points {
		tf.Points = append(tf.Points, runfile.TunePoint{Args: a, Status: runfile.PointPending})
	}
	return tf
}

// EstimatePoint is the a-priori wall time of one live point: the start,
// a typical search (six probes, each its duration plus a drain of a fifth
// of it) and the repeats.
func EstimatePoint(set runfile.TuneConfig, startup time.Duration) time.Duration {
	probe := time.Duration(set.ProbeDurationS * 1.2 * float64(time.Second))
	steps := min(set.MaxSteps, 6)
	if set.Predict {
		steps = min(set.MaxSteps, 4) // the search starts at the prediction
	}
	rep := time.Duration(set.RepeatDurationS * 1.2 * float64(time.Second))
	return startup + time.Duration(steps)*probe + time.Duration(set.Repeats)*rep
}

// Tuner runs a tune file's pending points.
type Tuner struct {
	opts    Options
	tf      *runfile.TuneFile
	save    func() error
	started time.Time
	perPt   time.Duration // a-priori estimate of a point
	donePts int
	doneDur time.Duration
}

// New returns a tuner over tf; save writes tf (after every point).
func New(opts Options, tf *runfile.TuneFile, save func() error, startup time.Duration) *Tuner {
	if opts.MetricsInterval <= 0 {
		opts.MetricsInterval = 250 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Tuner{opts: opts, tf: tf, save: save, perPt: EstimatePoint(tf.Settings, startup)}
}

// Remaining counts the points still to measure live (after prediction).
func (t *Tuner) Remaining() int {
	n := 0
	for _, p := range t.tf.Points {
		if p.Status == runfile.PointPending {
			n++
		}
	}
	return n
}

// PerPoint is the a-priori estimate of one live point.
func (t *Tuner) PerPoint() time.Duration { return t.perPt }

// PredictAll ranks the grid offline and marks the points outside the
// shortlist not_selected: the top-k points that start, and any within the
// margin of the predicted best. It does nothing if already done (resume).
func (t *Tuner) PredictAll() error {
	set := t.tf.Settings
	if !set.Predict || t.tf.Prediction != nil {
		return nil
	}
	if t.opts.Predict == nil {
		return errors.New("tune: predict needs a predictor")
	}
	var order []int
	for i := range t.tf.Points {
		p := &t.tf.Points[i]
		pr, err := t.opts.Predict(p.Args)
		if err != nil {
			return fmt.Errorf("predict %s: %w", p.Args.Label(), err)
		}
		p.Predicted = &runfile.PointPrediction{MaxRate: pr.MaxRate, E2EP95: pr.E2EP95, Starts: pr.Starts}
		if pr.Starts {
			order = append(order, i)
		}
	}
	// Best first: the highest predicted maximum, then the lowest p95 there;
	// grid order (less memory first) breaks exact ties.
	sort.SliceStable(order, func(a, b int) bool {
		pa, pb := t.tf.Points[order[a]].Predicted, t.tf.Points[order[b]].Predicted
		if pa.MaxRate != pb.MaxRate {
			return pa.MaxRate > pb.MaxRate
		}
		return pa.E2EP95 < pb.E2EP95
	})
	pred := &runfile.TunePrediction{Best: -1}
	if len(order) > 0 {
		pred.Best = order[0]
		top := t.tf.Points[order[0]].Predicted.MaxRate
		for _, i := range order {
			if t.tf.Points[i].Predicted.MaxRate == top {
				pred.Tied++
			}
		}
		for k, i := range order {
			// Within the margin: closer to the best than the margin, so the
			// prediction cannot tell it from the best (margin 0: none).
			if k < max(set.TopK, 1) || set.Margin > 0 && t.tf.Points[i].Predicted.MaxRate >= top*(1-set.Margin) {
				t.tf.Points[i].Predicted.Selected = true
			}
		}
	}
	for i := range t.tf.Points {
		p := &t.tf.Points[i]
		if p.Predicted.Selected {
			pred.Selected++
			continue
		}
		if p.Status == runfile.PointPending {
			p.Status = runfile.PointNotSelected
			p.Reason = fmt.Sprintf("predicted %.3g req/s, outside the top %d and the %.0f%% margin", p.Predicted.MaxRate, set.TopK, 100*set.Margin)
			if !p.Predicted.Starts {
				p.Reason = "predicted not to start"
			}
			pred.SavedSeconds += t.perPt.Seconds()
		}
	}
	t.tf.Prediction = pred
	return t.save()
}

// Run measures every pending point, saving the tune file after each, then
// finishes the file (best point, suggested queue_max). On cancellation the
// point under way stays pending, so --resume redoes it.
func (t *Tuner) Run(ctx context.Context) error {
	t.started = time.Now()
	for i := range t.tf.Points {
		p := &t.tf.Points[i]
		if p.Status != runfile.PointPending {
			continue
		}
		if why := t.skipReason(i); why != "" {
			p.Status, p.Reason = runfile.PointSkipped, why
			t.progress("tune [%d/%d %s] skipped: %s\n", i+1, len(t.tf.Points), p.Args.Label(), why)
			if err := t.save(); err != nil {
				return err
			}
			continue
		}
		t0 := time.Now()
		err := t.measure(ctx, i)
		if ctx.Err() != nil {
			*p = runfile.TunePoint{Args: p.Args, Status: runfile.PointPending, Predicted: p.Predicted}
			return fmt.Errorf("tune interrupted at %s: %w", p.Args.Label(), ctx.Err())
		}
		if err != nil {
			p.Status, p.Error = runfile.PointFailed, err.Error()
		}
		p.WallS = time.Since(t0).Seconds()
		t.tf.LiveSeconds += p.WallS
		t.donePts++
		t.doneDur += time.Since(t0)
		t.markBlowup(i)
		t.finish()
		if err := t.save(); err != nil {
			return err
		}
	}
	t.finish()
	t.tf.Done = true
	return t.save()
}

// skipReason says why point i need not run: a point it needs at least the
// memory of ran out, or an earlier point of its row blew up.
func (t *Tuner) skipReason(i int) string {
	a := t.tf.Points[i].Args
	for j := range t.tf.Points {
		q := t.tf.Points[j]
		if j == i {
			continue
		}
		if q.Status == runfile.PointOOM && a.NeedsAtLeast(q.Args) {
			return fmt.Sprintf("needs at least the memory of %s, which ran out", q.Args.Label())
		}
		if q.EndsRow && sameRow(a, q.Args) && a.MaxNumBatchedTokens > q.Args.MaxNumBatchedTokens {
			return fmt.Sprintf("latency blew up at %s in this row", q.Args.Label())
		}
	}
	return ""
}

// markBlowup sets EndsRow on a measured point that met the SLO at no rate
// or fell below blowup_fraction of its row's best so far.
func (t *Tuner) markBlowup(i int) {
	p := &t.tf.Points[i]
	if p.Status != runfile.PointMeasured {
		return
	}
	best := 0.0
	for j, q := range t.tf.Points {
		if j != i && q.Status == runfile.PointMeasured && sameRow(q.Args, p.Args) {
			best = max(best, q.MaxRPS)
		}
	}
	if p.MaxRate == 0 || p.MaxRPS < t.tf.Settings.BlowupFraction*best {
		p.EndsRow = true
	}
}

// finish sets the best point, the suggested queue_max and the prediction's
// agreement from the points measured so far.
func (t *Tuner) finish() {
	t.tf.UpdatedAt = time.Now().UTC()
	t.tf.Best, t.tf.SuggestedQueueMax = -1, 0
	for i, p := range t.tf.Points {
		if p.Status == runfile.PointMeasured && p.MaxRate > 0 && (t.tf.Best < 0 || p.MaxRPS > t.tf.Points[t.tf.Best].MaxRPS) {
			t.tf.Best = i
		}
	}
	if b, ok := t.tf.BestPoint(); ok {
		t.tf.SuggestedQueueMax = b.PeakInEngine
	}
	if pr := t.tf.Prediction; pr != nil {
		pr.Agree = pr.Best >= 0 && pr.Best == t.tf.Best
	}
}

func (t *Tuner) progress(format string, a ...any) {
	if t.opts.Progress != nil {
		fmt.Fprintf(t.opts.Progress, format, a...)
	}
}

// eta estimates the time left: the points after i at the average of the
// points done (else the a-priori estimate), plus what remains of point i.
func (t *Tuner) eta(i int, pointStart time.Time) time.Duration {
	per := t.perPt
	if t.donePts > 0 {
		per = t.doneDur / time.Duration(t.donePts)
	}
	left := 0
	for j := i + 1; j < len(t.tf.Points); j++ {
		if t.tf.Points[j].Status == runfile.PointPending {
			left++
		}
	}
	cur := max(0, per-time.Since(pointStart))
	return (cur + time.Duration(left)*per).Round(time.Second)
}

// probeResult is one bench run and the engine depth seen during it.
type probeResult struct {
	res                 bench.Result
	peakIn, peakWaiting int
}

func (t *Tuner) runOnce(ctx context.Context, cfg bench.Config, url string) (probeResult, error) {
	cfg.URL = url
	s := startSampler(ctx, &http.Client{Timeout: 2 * time.Second}, url+"/metrics", t.opts.MetricsInterval)
	res, err := bench.Run(ctx, cfg)
	in, w := s.stop()
	return probeResult{res: res, peakIn: in, peakWaiting: w}, err
}

func toProbe(rate float64, pr probeResult) runfile.TuneProbe {
	r := pr.res
	return runfile.TuneProbe{Rate: rate, Pass: r.SLOMet, RPS: r.RPS, E2EP95: r.E2EP95, ErrorRate: r.ErrorRate,
		PeakInEngine: pr.peakIn, PeakWaiting: pr.peakWaiting}
}

// measure starts point i's worker and searches, repeats and records it.
func (t *Tuner) measure(ctx context.Context, i int) error {
	p := &t.tf.Points[i]
	set := t.tf.Settings
	pointStart := time.Now()
	label := fmt.Sprintf("%d/%d %s", i+1, len(t.tf.Points), p.Args.Label())
	prof := t.opts.Profile
	prof.EngineArgs.MaxModelLen = p.Args.MaxModelLen
	prof.EngineArgs.MaxNumSeqs = p.Args.MaxNumSeqs
	prof.EngineArgs.MaxNumBatchedTokens = p.Args.MaxNumBatchedTokens
	prof.EngineArgs.GPUMemoryUtilization = p.Args.GPUMemoryUtilization
	cmd, err := WorkerCommand(prof, t.opts.Executable, set.StartupSeconds, t.opts.WorkerArgs)
	if err != nil {
		return err
	}
	sup, err := supervisor.New(supervisor.Config{
		Command: cmd, StartupTimeout: t.opts.StartupTimeout, DrainTimeout: 5 * time.Second,
		StopGrace: 5 * time.Second, Logger: t.opts.Logger,
	})
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = sup.Close(cctx)
	}()
	t.progress("tune [%s] starting worker…\n", label)
	lease, err := sup.EnsureReady(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		line := err.Error()
		var we *supervisor.WorkerError
		if errors.As(err, &we) {
			line = we.Line
			if line == "" {
				line = we.Error()
			}
		}
		p.Status, p.Reason = runfile.PointStartFailed, line
		if IsOOMLine(line) {
			p.Status = runfile.PointOOM
		}
		t.progress("tune [%s] worker did not start (%s): %s\n", label, p.Status, line)
		return nil
	}
	defer lease.Release()
	p.StartupS = time.Since(pointStart).Seconds()

	base := t.opts.Bench
	base.URL = lease.URL // recorded in every run file of the point
	base.Profile = t.tf.Profile
	base.Duration = time.Duration(set.ProbeDurationS * float64(time.Second))
	base.Ramp = min(base.Duration/10, 30*time.Second)
	base.Warmup = base.Ramp
	// base.Client stays as given: nil lets every probe size its own bounded
	// connection pool from its rate, as bench's find-max does.
	if base.Model == "" {
		base.Model = prof.ModelName()
	}

	sopts := search.Options{Start: set.StartRate, Growth: set.Growth, Precision: set.Precision, MaxSteps: set.MaxSteps}
	if p.Predicted != nil && p.Predicted.MaxRate > 0 {
		sopts.Start = p.Predicted.MaxRate
	}
	probes := map[int]probeResult{}
	prober := search.ProberFunc[bench.Result](func(ctx context.Context, step int, rate float64) (bench.Result, bool, error) {
		c := base
		c.Rate, c.Seed = rate, base.Seed+uint64(step)
		pr, err := t.runOnce(ctx, c, lease.URL)
		probes[step] = pr
		return pr.res, pr.res.SLOMet, err
	})
	sr, err := search.Run(ctx, sopts, prober, func(s search.Step[bench.Result]) {
		pr := probes[s.Step]
		v := "fail"
		if s.Pass {
			v = "pass"
		}
		t.progress("tune [%s] probe %d at %.3g req/s: %s (rps %.2f, e2e p95 %.2fs, in engine ≤ %d) — elapsed %s, ETA ~%s\n",
			label, s.Step, s.Rate, v, s.Result.RPS, s.Result.E2EP95, pr.peakIn,
			time.Since(t.started).Round(time.Second), t.eta(i, pointStart))
	})
	p.MaxRate, p.FailRate = sr.MaxRate, sr.FailRate
	p.Probes = p.Probes[:0]
	for _, s := range sr.Steps {
		if !s.Interrupted {
			p.Probes = append(p.Probes, toProbe(s.Rate, probes[s.Step]))
		}
	}
	fm := runfile.FindMax{MaxRate: sr.MaxRate, FailRate: sr.FailRate, StepDurationS: set.ProbeDurationS, MaxSteps: set.MaxSteps}
	for _, s := range sr.Steps {
		fm.Steps = append(fm.Steps, runfile.Step{Step: s.Step, Rate: s.Rate, Pass: s.Pass, Result: s.Result})
	}
	if b, ok := fm.Best(); ok {
		fm.MaxRPS = b.Result.RPS
	}
	if err != nil {
		return err
	}
	rf, err := bench.NewFindMaxRunFile(base, fm)
	if err != nil {
		return err
	}
	if p.SearchRunFile, err = runfile.Save(t.opts.RunsDir, &rf); err != nil {
		return err
	}
	p.Status = runfile.PointMeasured
	best, ok := sr.Best()
	if !ok {
		t.progress("tune [%s] no rate met the SLO\n", label)
		return nil
	}
	// The maximum: the median over the runs at the max rate.
	runs := []runfile.TuneProbe{toProbe(best.Rate, probes[best.Step])}
	if set.Repeats > 0 {
		runs = runs[:0]
	}
	rep := base
	rep.Rate = best.Rate
	rep.Duration = time.Duration(set.RepeatDurationS * float64(time.Second))
	rep.Ramp = min(rep.Duration/10, 30*time.Second)
	rep.Warmup = rep.Ramp
	p.Repeats = p.Repeats[:0]
	for k := range set.Repeats {
		r, err := t.repeat(ctx, rep, lease.URL, uint64(1000+k))
		if err != nil {
			return err
		}
		p.Repeats = append(p.Repeats, r)
		runs = append(runs, r.TuneProbe)
		t.progress("tune [%s] repeat %d/%d at %.3g req/s: rps %.2f, e2e p95 %.2fs, SLO met %v — ETA ~%s\n",
			label, k+1, set.Repeats, best.Rate, r.RPS, r.E2EP95, r.Pass, t.eta(i, pointStart))
	}
	p.MaxRPS = median(runs, func(r runfile.TuneProbe) float64 { return r.RPS })
	p.E2EP95 = median(runs, func(r runfile.TuneProbe) float64 { return r.E2EP95 })
	p.PeakInEngine = int(math.Round(median(runs, func(r runfile.TuneProbe) float64 { return float64(r.PeakInEngine) })))
	p.PeakWaiting = int(math.Round(median(runs, func(r runfile.TuneProbe) float64 { return float64(r.PeakWaiting) })))
	return nil
}

// repeat is one confirmation run, saved as a run file with its
// per-request rows.
func (t *Tuner) repeat(ctx context.Context, cfg bench.Config, url string, seed uint64) (runfile.TuneRepeat, error) {
	if err := makeDir(t.opts.RunsDir); err != nil {
		return runfile.TuneRepeat{}, err
	}
	tmp, err := tempName(t.opts.RunsDir)
	if err != nil {
		return runfile.TuneRepeat{}, err
	}
	log, err := bench.CreateRequestLog(tmp)
	if err != nil {
		return runfile.TuneRepeat{}, err
	}
	defer removeFile(tmp)
	cfg.Seed += seed
	cfg.Requests = log
	pr, runErr := t.runOnce(ctx, cfg, url)
	cerr := log.Close()
	if runErr != nil {
		return runfile.TuneRepeat{}, runErr
	}
	if cerr != nil {
		return runfile.TuneRepeat{}, cerr
	}
	cfg.Requests = nil
	rf, err := bench.NewRunFile(cfg, pr.res)
	if err != nil {
		return runfile.TuneRepeat{}, err
	}
	path, err := runfile.Save(t.opts.RunsDir, &rf)
	if err != nil {
		return runfile.TuneRepeat{}, err
	}
	reqPath := bench.RequestsPath(path)
	if err := renameFile(tmp, reqPath); err != nil {
		return runfile.TuneRepeat{}, err
	}
	return runfile.TuneRepeat{TuneProbe: toProbe(cfg.Rate, pr), RunFile: path, RequestsFile: reqPath}, nil
}

func median(runs []runfile.TuneProbe, f func(runfile.TuneProbe) float64) float64 {
	if len(runs) == 0 {
		return 0
	}
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}
