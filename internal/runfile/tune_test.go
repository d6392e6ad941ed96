package runfile

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTuneFileStore(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC)
	a, err := NewTunePath(dir, day)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewTunePath(dir, day)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(a) != "2026-03-04_tune01.json" || filepath.Base(b) != "2026-03-04_tune02.json" || !IsTuneName(filepath.Base(b)) {
		t.Fatalf("names %s, %s; want tune01 then tune02", a, b)
	}
	tf := TuneFile{SchemaVersion: TuneSchemaVersion, Kind: KindTune, Best: 0, SuggestedQueueMax: 34,
		Points: []TunePoint{{Args: EngineArgs{MaxModelLen: 512, MaxNumSeqs: 64, MaxNumBatchedTokens: 4096, GPUMemoryUtilization: 0.9}, Status: PointMeasured}}}
	if err := WriteTune(a, &tf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadTune(a)
	if err != nil || got.ID != "2026-03-04_tune01" || got.SuggestedQueueMax != 34 || len(got.Points) != 1 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	// The admission work reads this exact top-level integer field.
	raw, _ := os.ReadFile(a)
	var m map[string]json.RawMessage
	json.Unmarshal(raw, &m)
	if string(m["suggested_queue_max"]) != "34" {
		t.Errorf("suggested_queue_max = %s, want the integer 34 at the top level", m["suggested_queue_max"])
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d entries: a temporary file was left", len(ents))
	}
	// A run file is not a tune file; a newer schema is refused.
	os.WriteFile(b, []byte(`{"kind":"bench"}`), 0o644)
	if _, err := ReadTune(b); err == nil || !strings.Contains(err.Error(), "not a tune file") {
		t.Errorf("run file read as a tune file: %v", err)
	}
	os.WriteFile(b, []byte(`{"kind":"tune","schema_version":99}`), 0o644)
	if _, err := ReadTune(b); err == nil {
		t.Error("a newer schema was accepted")
	}
	if !(EngineArgs{MaxModelLen: 512, MaxNumSeqs: 128, MaxNumBatchedTokens: 8192, GPUMemoryUtilization: 0.9}).NeedsAtLeast(tf.Points[0].Args) ||
		(EngineArgs{MaxModelLen: 512, MaxNumSeqs: 128, MaxNumBatchedTokens: 2048, GPUMemoryUtilization: 0.9}).NeedsAtLeast(tf.Points[0].Args) {
		t.Error("NeedsAtLeast: more of both needs at least as much; fewer batched tokens does not")
	}
}
