// Package userservice holds the domain of the User Service: users, enrollments,
// preferences and sessions, the rules that change them, the events those changes
// publish, the error codes every edge speaks, and the interfaces through which the
// other packages meet.
//
// Start reading here. The rules live in [Apply]: it takes the committed [State] of
// one user and a [Command], and returns the next state together with the
// [Mutation] that must be committed to PostgreSQL before anyone may see it.
// Nothing in this package performs I/O.
//
// Subpackages, one per dependency: actors (protoactor-go per-user actors),
// http (fasthttp edge), persistence/postgres, persistence/redis, messaging
// (RabbitMQ). Only cmd/userservice wires concrete types together.
package userservice
