// Package contract is hookstream's wire contract on NATS: subjects, stream
// and bucket names, headers and the JSON message types that hookstream and
// the operator's internal services exchange.
//
// It is the public interface for internal publishers and for processors
// written in other languages, and it is versioned: a change that breaks a
// reader bumps [Version] and is called out in the README. The golden files in
// testdata pin the JSON of every message type.
//
// The package uses only the standard library.
package contract

// Version is the version of this contract. It travels in the
// [HeaderContractVersion] header of every message hookstream publishes.
const Version = "1"
