package bench

import (
	"encoding/json"
	"testing"
	"time"
)

// Per-request costs of the generator's own work (no network).

func BenchmarkBodyTokens(b *testing.B) {
	bb, err := newBodyBuilder(scenario(b, 200), "Qwen/Qwen2.5-0.5B-Instruct", 1)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := bb.body(i); err != nil {
			b.Fatal(err)
		}
	}
}

var tokenChunk = []byte(`{"id":"cmpl-0123456789","object":"text_completion","created":1795781357,"model":"Qwen/Qwen2.5-0.5B-Instruct","choices":[{"index":0,"text":" the","logprobs":null,"finish_reason":null,"stop_reason":null}],"usage":null}`)

func BenchmarkParseChunkFast(b *testing.B) {
	b.ReportAllocs()
	var c chunk
	for b.Loop() {
		if err := parseChunk(tokenChunk, &c); err != nil || len(c.Choices) == 0 {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseChunkJSON(b *testing.B) {
	b.ReportAllocs()
	var c chunk
	for b.Loop() {
		if err := json.Unmarshal(tokenChunk, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecord200Tokens(b *testing.B) {
	rec := newRecorder(0, time.Hour, 5*time.Second)
	itls := make([]time.Duration, 199)
	for i := range itls {
		itls[i] = 7 * time.Millisecond
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		at := time.Duration(i) * time.Millisecond
		o := outcome{sched: at, sent: at, end: at + 1500*time.Millisecond, ttft: 100 * time.Millisecond, itls: itls, output: 200, prompt: 200}
		rec.started(o.sched, o.sent)
		rec.record(&o)
	}
}
