// Package configs embeds the shipped model profiles, the SLO and the prompts,
// so the binary works from any directory; files on disk can still be named
// explicitly and win over the embedded copies.
package configs

import "embed"

// FS holds model_profiles/*.yaml, slo.yaml and prompts/*.
//
//go:embed slo.yaml model_profiles/*.yaml prompts/*.txt
var FS embed.FS
