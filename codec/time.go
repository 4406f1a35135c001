package codec

import "time"

// dhcpEpochUnix is 2000-01-01T00:00:00Z in Unix seconds, the epoch of the
// absolute times of RFC 7653 section 2 and of the DUID-LLT time.
const dhcpEpochUnix = 946684800

// DHCPTime converts t to a DHCP absolute time: whole seconds since
// 2000-01-01T00:00:00Z modulo 2^32, as OPTION_LQ_BASE_TIME,
// OPTION_LQ_START_TIME, OPTION_LQ_END_TIME and DUID-LLT carry it. Fractions of
// a second are dropped, and times before 2000 or after 2136-02-07T06:28:15Z
// wrap around.
func DHCPTime(t time.Time) uint32 {
	return uint32(t.Unix() - dhcpEpochUnix)
}

// TimeFromDHCP converts a DHCP absolute time to a UTC time between
// 2000-01-01T00:00:00Z and 2136-02-07T06:28:15Z. Use TimeFromDHCPNear when the
// value may have wrapped.
func TimeFromDHCP(v uint32) time.Time {
	return time.Unix(dhcpEpochUnix+int64(v), 0).UTC()
}

// TimeFromDHCPNear converts a DHCP absolute time to the UTC time, among all
// those that share its value modulo 2^32, that is closest to ref (typically
// the local clock), so that it keeps working after the counter wraps in 2136.
func TimeFromDHCPNear(v uint32, ref time.Time) time.Time {
	delta := int64(int32(v - DHCPTime(ref))) // signed distance modulo 2^32
	return time.Unix(ref.Unix()+delta, 0).UTC()
}
