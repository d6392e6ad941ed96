package observability

import (
	"runtime"
	"runtime/debug"
)

// version may be stamped at link time (-ldflags "-X
// github.com/llmlab/llmlab/internal/observability.version=v1.2.3"), as the
// Dockerfile does for builds without the .git directory; otherwise the
// module version Go records is used.
var version string

// revision likewise may be stamped; otherwise vcs.revision is used.
var revision string

// Build says which llmlab is running.
type Build struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goversion"`
	BuildTime string `json:"build_time,omitempty"`
}

// ReadBuild returns the build information Go stamps into the binary.
func ReadBuild() Build {
	b := Build{Version: "(devel)", Revision: "unknown", GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v := bi.Main.Version; v != "" {
			b.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Revision = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			case "vcs.time":
				b.BuildTime = s.Value
			}
		}
	}
	if version != "" {
		b.Version = version
	}
	if revision != "" {
		b.Revision = revision
	}
	return b
}
