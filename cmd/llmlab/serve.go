package main

import (
	"context"
	"errors"
	"io"
)

// TODO(owner of this file): replace with the real subcommand.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("serve: not implemented yet")
}
