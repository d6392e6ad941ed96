//go:build !linux

package server

import "time"

// fineSleep sleeps for d; see sleep_linux.go for why Linux does better.
func fineSleep(d time.Duration) { time.Sleep(d) }
