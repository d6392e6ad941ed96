package server

import (
	"syscall"
	"time"
)

// fineSleep sleeps for d (short: at most fineWindow) with nanosleep(2),
// which wakes within tens of microseconds. Go's timers wake through the
// network poller, whose epoll timeout has millisecond granularity, so a
// timer set for the last fraction of a millisecond fires up to ~1 ms late;
// blocking this one thread in a syscall for that last stretch keeps step
// ends accurate without spinning a CPU.
func fineSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for {
		var rem syscall.Timespec
		err := syscall.Nanosleep(&ts, &rem)
		if err != syscall.EINTR {
			return
		}
		ts = rem
	}
}
