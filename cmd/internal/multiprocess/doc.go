// Package multiprocess holds only a test: it builds cmd/api and cmd/worker
// and runs them as separate processes against the machine's Postgres and
// nats-server, the way they are deployed (one API, several workers). It is
// a package of its own so that its binary builds and its database stay out
// of the faster unit tests of cmd/internal/app.
package multiprocess
