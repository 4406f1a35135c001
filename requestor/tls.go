package requestor

import "crypto/tls"

// tlsCipherSuites are the TLS 1.2 cipher suites a requestor offers when
// Config.TLS sets none: the ECDHE suites with AES-GCM that RFC 7525 section
// 4.2 recommends, and their ChaCha20-Poly1305 counterparts (RFC 7905).
// RFC 7653 section 8.2 asks requestors to follow RFC 7525. TLS 1.3 suites
// are all AEAD, and crypto/tls does not let them be configured.
var tlsCipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}
