package runfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ProfileName is the profile as it appears in file names.
func ProfileName(p string) string {
	if p == "" {
		return "adhoc"
	}
	return p
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// runName matches YYYY-MM-DD_runXX_… and captures XX.
var runName = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})_run(\d+)_.*\.json$`)

// NextPath returns dir/YYYY-MM-DD_runXX_<profile>.json with XX one more
// than the highest number already used on that day (01 for the first).
func NextPath(dir, profile string, day time.Time) (string, error) {
	date := day.Format("2006-01-02")
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("list run files: %w", err)
	}
	name := fmt.Sprintf("%s_run%02d_%s.json", date, nextNumber(entries, runName, date), unsafeName.ReplaceAllString(ProfileName(profile), "-"))
	return filepath.Join(dir, name), nil
}

// nextNumber is one more than the highest XX among the entries that name
// matches on day date (name captures the date and XX), or 1.
func nextNumber(entries []os.DirEntry, name *regexp.Regexp, date string) int {
	next := 1
	for _, e := range entries {
		m := name.FindStringSubmatch(e.Name())
		if m == nil || m[1] != date {
			continue
		}
		if n, err := strconv.Atoi(m[2]); err == nil && n >= next {
			next = n + 1
		}
	}
	return next
}

// Save writes rf under dir with the next free run name of today
// (UTC) and returns the path. The file appears under its name only
// complete: it is written to a temporary file first and then linked to the
// run name, which fails if the name exists, so two benches finishing at
// once cannot overwrite each other either.
func Save(dir string, rf *RunFile) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create runs dir: %w", err)
	}
	for range 100 {
		path, err := NextPath(dir, rf.Profile, time.Now().UTC())
		if err != nil {
			return "", err
		}
		tmp, err := writeTemp(path, rf)
		if err != nil {
			return "", err
		}
		err = claim(tmp, path)
		os.Remove(tmp) // the run name, if claimed, is a second link to it
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("write run file: %w", err)
		}
		// The name is ours but the number may not be: a run saved at the
		// same moment under another profile gets another name with the
		// same number. Whoever finds another file with its number after
		// creating its own gives the number up; of two that both keep one,
		// the later creator would have seen the earlier's file, so no
		// number is kept twice. Two that both give up retry after a random
		// pause, so they do not collide again.
		lost, err := runNumberTaken(dir, filepath.Base(path))
		if err != nil || lost {
			os.Remove(path)
			if err != nil {
				return "", err
			}
			time.Sleep(time.Duration(rand.Int64N(int64(5 * time.Millisecond))))
			continue
		}
		return path, nil
	}
	return "", fmt.Errorf("save run file: no free run number in %s", dir)
}

// claim gives the complete file tmp the name path, failing with
// fs.ErrExist if path exists. A hard link does both at once. Where the file
// system has no hard links, the name is reserved by an exclusive create and
// tmp renamed over it, so a reader may see an empty file for that moment.
func claim(tmp, path string) error {
	err := os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// runNumberTaken reports whether dir holds another run file of name's day
// and number.
func runNumberTaken(dir, name string) (bool, error) {
	mine := runName.FindStringSubmatch(name)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("list run files: %w", err)
	}
	for _, e := range entries {
		m := runName.FindStringSubmatch(e.Name())
		if m != nil && m[1] == mine[1] && m[2] == mine[2] && e.Name() != name {
			return true, nil
		}
	}
	return false, nil
}

// Write writes rf to path, replacing any file there. rf.ID is set
// from the file name. The new file is written beside path and renamed over
// it, so a reader sees the old file or the new one, never a partial one.
func Write(path string, rf *RunFile) error {
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create run file dir: %w", err)
		}
	}
	tmp, err := writeTemp(path, rf)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write run file: %w", err)
	}
	return nil
}

// writeTemp writes rf, with its ID taken from path, to a new temporary file
// in path's directory (a rename is atomic only within one file system) and
// returns its name. The name starts with a dot and does not end in .json,
// so neither run numbering nor a reader of run files counts it. The data
// is synced before the file gets its real name, so a crash cannot leave an
// empty file under it.
func writeTemp(path string, rf *RunFile) (string, error) {
	rf.ID = strings.TrimSuffix(filepath.Base(path), ".json")
	b, err := json.MarshalIndent(rf, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode run file: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("write run file: %w", err)
	}
	tmp := f.Name()
	err = func() error {
		if _, err := f.Write(append(b, '\n')); err != nil {
			return err
		}
		if err := f.Chmod(0o644); err != nil { // CreateTemp makes it 0600
			return err
		}
		return f.Sync()
	}()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("write run file %s: %w", path, err)
	}
	return tmp, nil
}

// Read reads a run file written by Write or Save.
func Read(path string) (RunFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return RunFile{}, fmt.Errorf("read run file: %w", err)
	}
	var rf RunFile
	if err := json.Unmarshal(b, &rf); err != nil {
		return RunFile{}, fmt.Errorf("decode run file %s: %w", path, err)
	}
	if rf.SchemaVersion > SchemaVersion {
		return RunFile{}, fmt.Errorf("run file %s: schema version %d is newer than this llmlab (%d)", path, rf.SchemaVersion, SchemaVersion)
	}
	return rf, nil
}
