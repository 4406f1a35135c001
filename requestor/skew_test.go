package requestor

import (
	"testing"
	"time"

	"github.com/alqd/alqd/codec"
)

// TestSkewEstimatorSamples feeds the estimator samples relative to a
// receive time and checks the estimate after each. A sample's offset is
// how far the server's base-time lies before the receive time, so it is
// the sample itself less the half second the estimator adds back.
func TestSkewEstimatorSamples(t *testing.T) {
	type step struct {
		offset time.Duration // receive time minus base-time, whole seconds
		kind   skewSample
		want   time.Duration // estimate after the step
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first current sample sets the estimate", []step{
			{10 * time.Second, sampleCurrent, 9500 * time.Millisecond},
		}},
		{"bound samples above the estimate change nothing", []step{
			{time.Second, sampleCurrent, 500 * time.Millisecond},
			{time.Hour, sampleBound, 500 * time.Millisecond},
			{time.Hour, sampleBound, 500 * time.Millisecond},
			{time.Hour, sampleBound, 500 * time.Millisecond},
			{time.Hour, sampleBound, 500 * time.Millisecond},
			{time.Hour, sampleBound, 500 * time.Millisecond},
			{2 * time.Second, sampleBound, 500 * time.Millisecond},
		}},
		{"a bound sample below the estimate lowers it half way", []step{
			{5 * time.Second, sampleCurrent, 4500 * time.Millisecond},
			{time.Second, sampleBound, 2500 * time.Millisecond},
		}},
		{"a first bound sample below the default sets the estimate", []step{
			{-time.Hour, sampleBound, -time.Hour - 500*time.Millisecond},
		}},
		{"a first bound sample above the default changes nothing", []step{
			{time.Hour, sampleBound, 0},
			{time.Second, sampleCurrent, 500 * time.Millisecond},
		}},
		{"current samples far above reset after four", []step{
			{time.Second, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, time.Minute - 500*time.Millisecond},
		}},
		{"bound samples do not break a run of high current ones", []step{
			{time.Second, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, 500 * time.Millisecond},
			{time.Hour, sampleBound, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, 500 * time.Millisecond},
			{time.Minute, sampleCurrent, time.Minute - 500*time.Millisecond},
		}},
	}
	received := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s skewEstimator
			for i, st := range tc.steps {
				base := codec.DHCPTime(received.Add(-st.offset))
				if got := s.observe(base, received, st.kind); got != st.want {
					t.Fatalf("step %d: estimate %v, want %v", i, got, st.want)
				}
			}
		})
	}
}

// TestActiveSkewSample checks which messages of an active query give
// current samples: the REPLY, and messages without binding data whose
// base-time is after every one received before.
func TestActiveSkewSample(t *testing.T) {
	type msg struct {
		typ      codec.MsgType
		bindings bool
		base     uint32
		want     skewSample
	}
	tests := []struct {
		name string
		msgs []msg
	}{
		{"catch-up, then live", []msg{
			{codec.MsgLeasequeryReply, false, 5000, sampleCurrent},
			{codec.MsgLeasequeryData, true, 1000, sampleBound}, // catch-up replays an older change
			{codec.MsgLeasequeryData, true, 1001, sampleBound},
			{codec.MsgLeasequeryData, false, 5000, sampleBound}, // CatchUpComplete in the REPLY's second
			{codec.MsgLeasequeryData, true, 5001, sampleBound},  // binding data, though newest
			{codec.MsgLeasequeryData, false, 5060, sampleCurrent},
		}},
		{"lagging connection", []msg{
			{codec.MsgLeasequeryReply, true, 7000, sampleCurrent},
			{codec.MsgLeasequeryData, true, 7001, sampleBound},
			{codec.MsgLeasequeryData, true, 7002, sampleBound},
			{codec.MsgLeasequeryData, false, 7002, sampleBound}, // keepalive at the last data's base-time
			{codec.MsgLeasequeryDone, false, 7002, sampleBound},
		}},
		{"keepalives and DONE after the newest", []msg{
			{codec.MsgLeasequeryReply, false, 100, sampleCurrent},
			{codec.MsgLeasequeryData, false, 160, sampleCurrent},
			{codec.MsgLeasequeryData, false, 150, sampleBound}, // the server clock stepped back
			{codec.MsgLeasequeryDone, false, 161, sampleCurrent},
		}},
		{"base-times across the 2^32 wrap", []msg{
			{codec.MsgLeasequeryReply, false, 0xffffff00, sampleCurrent},
			{codec.MsgLeasequeryData, false, 0x10, sampleCurrent},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st activeState
			for i, m := range tc.msgs {
				in := message{info: MessageInfo{Type: m.typ, BaseTime: m.base, HasBaseTime: true}, hasClientData: m.bindings}
				if got := st.skewSample(&in); got != m.want {
					t.Errorf("message %d (%v, base-time %d): sample kind %d, want %d", i, m.typ, m.base, got, m.want)
				}
			}
		})
	}
}
