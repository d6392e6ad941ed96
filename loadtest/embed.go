// Package loadtest embeds the shipped benchmark scenarios so `llmlab bench`
// works from any directory; a scenario file on disk can still be named.
package loadtest

import "embed"

// FS holds scenarios/*.yaml.
//
//go:embed scenarios/*.yaml
var FS embed.FS
