package runfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNextRunPath(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, n := range []string{"2026-11-27_run01_a.json", "2026-11-27_run07_b.json", "2026-11-26_run09_a.json", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p, err := NextPath(dir, "my profile/x", day)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "2026-11-27_run08_my-profile-x.json"); p != want {
		t.Errorf("got %s, want %s", p, want)
	}
	p, _ = NextPath(filepath.Join(dir, "missing"), "", day)
	if filepath.Base(p) != "2026-11-27_run01_adhoc.json" {
		t.Errorf("got %s for an empty dir", p)
	}
}

// Runs saved at once under different profiles must still get different run
// numbers: the exclusive create alone only protects the same file name.
func TestSaveRunFileNumbersAreUniqueAcrossProfiles(t *testing.T) {
	dir := t.TempDir()
	const n = 16
	paths := make(chan string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rf := RunFile{Profile: fmt.Sprintf("p%d", i)}
			p, err := Save(dir, &rf)
			if err != nil {
				t.Error(err)
				return
			}
			paths <- p
		}()
	}
	wg.Wait()
	close(paths)
	seen := map[string]string{}
	for p := range paths {
		m := runName.FindStringSubmatch(filepath.Base(p))
		if m == nil {
			t.Fatalf("bad name %s", p)
		}
		if q, dup := seen[m[2]]; dup {
			t.Errorf("run number %s used twice: %s and %s", m[2], q, p)
		}
		seen[m[2]] = p
	}
	if files, _ := os.ReadDir(dir); len(files) != n {
		t.Errorf("%d files in the runs dir, want %d", len(files), n)
	}
}

// TestRunFilesAppearOnlyComplete: a reader of the runs directory (the tuner,
// the report) never sees a run file that is empty or half written, whether
// it is numbered (SaveRunFile) or rewritten in place (WriteRunFile, --out),
// and no temporary file is left behind.
func TestRunFilesAppearOnlyComplete(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.json")
	stop := make(chan struct{})
	readerDone := make(chan []string)
	go func() {
		var bad []string
		for {
			select {
			case <-stop:
				readerDone <- bad
				return
			default:
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
					continue
				}
				b, err := os.ReadFile(filepath.Join(dir, e.Name()))
				if err != nil {
					continue // given up (a lost run number) between listing and reading
				}
				var rf RunFile
				if err := json.Unmarshal(b, &rf); err != nil || rf.ID+".json" != e.Name() {
					bad = append(bad, fmt.Sprintf("%s (%d bytes)", e.Name(), len(b)))
				}
			}
		}
	}()
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for range each {
				rf := RunFile{Profile: fmt.Sprintf("p%d", i), Results: &Results{}}
				if _, err := Save(dir, &rf); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			rf := RunFile{Profile: "out", Results: &Results{}}
			if err := Write(out, &rf); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	close(stop)
	if bad := <-readerDone; len(bad) > 0 {
		t.Errorf("a reader saw %d incomplete run files, e.g. %s", len(bad), bad[0])
	}
	if files, _ := os.ReadDir(dir); len(files) != writers*each+1 {
		var names []string
		for _, f := range files {
			names = append(names, f.Name())
		}
		t.Errorf("%d files in the runs dir, want %d: %v", len(files), writers*each+1, names)
	}
}
