// Package actors keeps one protoactor-go virtual actor per user: the only place
// that holds a user's committed state in memory and the only writer of that user.
// [Registry] implements [userservice.Users]; the edges address users only through
// that interface. [Cluster] implements it too (cluster mode, docs/cluster.md): each
// node keeps its Registry, fronted by a protoactor cluster kind placed by
// distributed hashing over the etcd membership, with a fence lease and a release
// handshake so that one node at a time serves a user.
//
// Design. A fixed set of owner actors shards the user ids (FNV-1a of the id). An
// owner keeps userID → child and spawns a user actor on the first message for that
// user; the caller's reply address travels with each request, so the owner forwards
// and the child answers the caller directly. A user actor loads its state
// asynchronously (nothing in Receive blocks), answers reads from memory, and runs
// commands one at a time: apply, commit through the group committer, then swap the
// new state in and reply. Commands that arrive while a commit is in flight wait in
// the actor's FIFO; a commit whose outcome is unknown makes the actor reload.
//
// Passivation is a handshake with the owner, because protoactor drops whatever is
// left in a stopped actor's mailbox and frees its PID before the Stopped handler
// runs. An idle child asks its owner (passivateRequest); the owner stops forwarding,
// buffers new messages for that user and answers passivateConfirm, which reaches the
// child after everything forwarded before it. A child that got work in between
// answers passivateCancel (the owner flushes the buffer to it); otherwise it stops.
// Only on Terminated does the owner forget the child, and it then spawns a fresh one
// for any buffered messages. So no request is lost and two actors of one user never
// overlap. The owner starts the same handshake on its least recently used child when
// it holds more than its share of Config.MaxActive.
package actors
