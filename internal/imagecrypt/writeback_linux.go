package imagecrypt

import (
	"os"
	"syscall"
)

// startWriteback asks Linux to start writing the range back to disk now, without waiting
// (sync_file_range SYNC_FILE_RANGE_WRITE): the data is still made durable by the fsync at
// the end of the run; this only spreads the disk writes over the run instead of leaving
// them all to that fsync. Errors are ignored (the fsync reports any).
func startWriteback(f *os.File, off, n int64) {
	const syncFileRangeWrite = 2
	_, _, _ = syscall.Syscall6(syscall.SYS_SYNC_FILE_RANGE, f.Fd(), uintptr(off), uintptr(n), syncFileRangeWrite, 0, 0)
}
