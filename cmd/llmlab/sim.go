package main

import (
	"context"
	"errors"
	"io"
)

// TODO(owner of this file): replace with the real subcommand.
func runSim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("sim: not implemented yet")
}
