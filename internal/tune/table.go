package tune

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/llmlab/llmlab/internal/runfile"
)

// WriteTable prints the tune's table (config → max RPS @ p95, with OOM and
// skip marks), the best point and the suggested queue_max.
func WriteTable(w io.Writer, tf *runfile.TuneFile) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	s := tf.Settings
	fmt.Fprintf(tw, "llmlab tune %s  profile %s  engine %s  model %s\n", tf.ID, tf.Profile, tf.Engine, tf.Model)
	fmt.Fprintf(tw, "SLO p95 e2e ≤ %.3gs, error rate ≤ %.3g%%; probes of %gs, %d repeats of %gs at the max rate (median)\n\n",
		tf.SLO.P95E2ESeconds, 100*tf.SLO.MaxErrorRate, s.ProbeDurationS, s.Repeats, s.RepeatDurationS)
	hdr := "max_num_seqs\tmax_num_batched_tokens\tmax_model_len\tutil\tmax RPS\te2e p95 s\tmax rate\tin engine\t"
	if tf.Prediction != nil {
		hdr += "predicted\t"
	}
	fmt.Fprintln(tw, hdr+"status")
	for i, p := range tf.Points {
		mark := p.Status
		switch p.Status {
		case runfile.PointMeasured:
			mark = "ok"
			if p.MaxRate == 0 {
				mark = "no rate met the SLO"
			}
			if p.EndsRow {
				mark += " (latency blow-up: ends row)"
			}
			if i == tf.Best {
				mark += "  ← best"
			}
		case runfile.PointOOM:
			mark = "OOM: " + p.Reason
		case runfile.PointStartFailed:
			mark = "did not start: " + p.Reason
		case runfile.PointSkipped, runfile.PointNotSelected:
			mark += ": " + p.Reason
		case runfile.PointFailed:
			mark += ": " + p.Error
		}
		rps, p95, rate, in := "-", "-", "-", "-"
		if p.Status == runfile.PointMeasured {
			rps, p95, rate, in = fmt.Sprintf("%.2f", p.MaxRPS), fmt.Sprintf("%.2f", p.E2EP95), fmt.Sprintf("%.3g", p.MaxRate), fmt.Sprint(p.PeakInEngine)
		}
		row := fmt.Sprintf("%d\t%d\t%d\t%g\t%s\t%s\t%s\t%s\t", p.Args.MaxNumSeqs, p.Args.MaxNumBatchedTokens, p.Args.MaxModelLen,
			p.Args.GPUMemoryUtilization, rps, p95, rate, in)
		if tf.Prediction != nil {
			pr := "-"
			if p.Predicted != nil {
				pr = fmt.Sprintf("%.3g", p.Predicted.MaxRate)
				if !p.Predicted.Starts {
					pr = "OOM"
				}
			}
			row += pr + "\t"
		}
		fmt.Fprintln(tw, row+mark)
	}
	if b, ok := tf.BestPoint(); ok {
		fmt.Fprintf(tw, "\nbest: %s — %.2f req/s sustained at p95 %.2fs (rate %.3g req/s)\n", b.Args.Label(), b.MaxRPS, b.E2EP95, b.MaxRate)
		fmt.Fprintf(tw, "suggested queue_max: %d (peak requests in the engine at the best point's max rate; %d of them waiting)\n",
			tf.SuggestedQueueMax, b.PeakWaiting)
	} else {
		fmt.Fprintln(tw, "\nbest: none — no point met the SLO")
	}
	if pr := tf.Prediction; pr != nil {
		agree := "no"
		if pr.Agree {
			agree = "yes"
		}
		pb := "none"
		if pr.Best >= 0 && pr.Best < len(tf.Points) {
			pb = tf.Points[pr.Best].Args.Label()
		}
		if pr.Tied > 1 {
			agree += fmt.Sprintf(" (the prediction ties %d points at the best rate)", pr.Tied)
		}
		fmt.Fprintf(tw, "predict: %d of %d points measured live; ~%s of live time saved; predicted best %s; live best == predicted best: %s\n",
			pr.Selected, len(tf.Points), fmtSeconds(pr.SavedSeconds), pb, agree)
	}
	fmt.Fprintf(tw, "live time: %s\n", fmtSeconds(tf.LiveSeconds))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

func fmtSeconds(s float64) string {
	m := int(s) / 60
	return fmt.Sprintf("%dm%02ds", m, int(s)%60)
}
