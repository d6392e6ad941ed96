package admission

import (
	"encoding/json"
	"fmt"
	"os"
)

// QueueMaxFromTune reads the suggested_queue_max of a tune file
// (experiments/tunes/YYYY-MM-DD_tuneXX.json, written by `llmlab tune`):
// the top-level integer field. docs/admission.md says how the tuner
// derives it from the measured knee.
func QueueMaxFromTune(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("queue_max_from: %w", err)
	}
	var f struct {
		Suggested *json.Number `json:"suggested_queue_max"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, fmt.Errorf("queue_max_from %s: %w", path, err)
	}
	if f.Suggested == nil {
		return 0, fmt.Errorf("queue_max_from %s: no top-level suggested_queue_max field", path)
	}
	n, err := f.Suggested.Int64()
	if err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("queue_max_from %s: suggested_queue_max %s is not an integer in [0, 1048576]", path, f.Suggested)
	}
	return int(n), nil
}
