package tune

import (
	"fmt"
	"os"
)

func makeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create runs dir: %w", err)
	}
	return nil
}

// tempName returns a hidden name in dir that no reader of *.json counts.
func tempName(dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".requests-*.jsonl.gz.tmp")
	if err != nil {
		return "", fmt.Errorf("requests file: %w", err)
	}
	name := f.Name()
	_ = f.Chmod(0o644) // CreateTemp makes it 0600; run files are 0644
	f.Close()
	return name, nil
}

func removeFile(path string) { _ = os.Remove(path) }

func renameFile(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("requests file: %w", err)
	}
	return nil
}
