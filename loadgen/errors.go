package loadgen

import "errors"

var (
	// ErrInvalidConfig is wrapped by the Validate methods, the constructors
	// and ParseStampMode when a setting can not work.
	ErrInvalidConfig = errors.New("loadgen: invalid configuration")

	// ErrNotLoopback is wrapped by RequireLoopback when a target address is
	// not on loopback and remote targets are not allowed.
	ErrNotLoopback = errors.New("loadgen: target is not a loopback address")

	// ErrFileLimit is wrapped by RunSwarm when RLIMIT_NOFILE can not hold
	// the connections of one process.
	ErrFileLimit = errors.New("loadgen: too many connections for the file descriptor limit")

	// ErrMerge is wrapped by MergeSwarmSummaries when a part lacks the raw
	// data needed to merge it.
	ErrMerge = errors.New("loadgen: summaries can not be merged")
)
