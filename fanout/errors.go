package fanout

import "errors"

// ErrInvalidFilter is returned by Filter.Validate and Group.Subscribe for a
// filter whose kind is unknown or whose key value has the wrong form.
var ErrInvalidFilter = errors.New("fanout: invalid filter")

// ErrInvalidConfig is returned by Config.Validate and NewRing for a Config
// field out of range.
var ErrInvalidConfig = errors.New("fanout: invalid config")

// ErrGroupClosed is returned by Group.Subscribe after Group.Close.
var ErrGroupClosed = errors.New("fanout: group closed")

// ErrNilArgument is returned by Ring.NewGroup when its source or wake
// function is nil.
var ErrNilArgument = errors.New("fanout: nil argument")
