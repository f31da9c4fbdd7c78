// Package quorum provides quorum calls and replica placement for leaderless
// replication: [Call] waits for k of n replicas and cancels the rest, and
// [Ring] places keys on nodes by rendezvous hashing over fixed partitions.
package quorum
