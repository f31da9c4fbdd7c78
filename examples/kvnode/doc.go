// Command kvnode is a replicated, linearizable key-value server built on
// distkit's consensus package, with raft traffic over consensus/tcp. It
// speaks the Redis protocol (RESP) and HTTP.
//
//	kvnode                  # a 3-member cluster in one process on 127.0.0.1:
//	                        # Redis 6381-6383, HTTP 8081-8083, raft 7001-7003
//	kvnode -id 1 -peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 \
//	       -redis 127.0.0.1:6381 -http 127.0.0.1:8081 -data ./data/1
//	kvnode -id 4 -join http://127.0.0.1:8081 -raft 127.0.0.1:7004 \
//	       -redis 127.0.0.1:6384 -http 127.0.0.1:8084 -data ./data/4
//
// Every member accepts every command. Writes (SET, DEL, INCR, INCRBY,
// DECR, DECRBY, APPEND, MSET) are replicated through the raft log and
// acknowledged once durable on a majority. Reads (GET, MGET, EXISTS) are
// linearizable: they wait for a ReadIndex barrier shared by concurrent
// reads. READONLY on a connection, or -stale-reads, serves reads from the
// member's own state instead.
//
// IDEMPOTENT <key> <write...> (or the HTTP header Idempotency-Key) makes a
// write apply once however often it is retried, on any member and across
// leader changes: the key's record lives in the replicated state
// (consensus.WithRequestID), in the log and in snapshots. Keys belong to
// the authenticated user, and a key reused with another command is an
// error that applies nothing.
//
// Expiry (SET EX/PX) is deterministic: the leader stamps every write with
// its hybrid logical clock (consensus.Config.Timestamps), EX/PX count from
// the write's timestamp, and keys expire against the replicated clock, the
// timestamp of the last write applied. A member whose clock is off by more
// than the maximum offset (500ms) cannot move it: as leader it is refused
// and replaced.
//
// HTTP: GET /status, POST /members, DELETE /members/{id},
// POST /transfer-leader, GET /metrics, GET/PUT/DELETE /kv/{key}.
//
// Security: AUTH and ACL users (categories @read, @write, @admin, key
// patterns) kept in the replicated state, so every member enforces the
// same rules; HTTP takes the same users by Basic auth. -requirepass sets
// the default user's password; protected mode refuses remote clients
// while there is neither a password nor TLS; -tls-* puts TLS on the raft,
// Redis and HTTP ports. Security events go to an audit log.
//
// SIGINT or SIGTERM stops the process gracefully (exit status 0). See
// README.md for a tour.
package main
