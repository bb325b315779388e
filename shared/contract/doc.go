// Package contract is hookstream's wire contract on NATS: subjects, stream
// and bucket names, headers and the JSON message types that hookstream and
// the operator's internal services exchange.
//
// It is the public interface for internal publishers and for processors
// written in other languages, and it is versioned: a change that a reader
// cannot take as it is bumps [Version]. Within a version, changes are
// additive (optional fields, new subjects) and called out in the README,
// with the upgrade order some of them need. The golden files in testdata
// pin the JSON of every message type.
//
// The package uses only the standard library.
package contract

// Version is the version of this contract. It travels in the
// [HeaderContractVersion] header of every message hookstream publishes.
const Version = "1"
