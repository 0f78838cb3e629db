// Package results is the Redis record of a bulk credential reset job: the job's metadata
// and counters, the new secret and the outcome of every user, and their export as JSON
// or CSV. A secret is written before it is sent to Odin, so a value that reached Odin is
// never missing from the record.
//
// Every key of a job shares the hash tag {<job ID>}, so the multi-key Lua scripts work on
// Redis Cluster, and every key has a TTL. Secrets are sealed by a Sealer before they are
// stored: AES-256-GCM with the job and user IDs as associated data (Keyring), or, when the
// operator opted out, plaintext.
//
// The package never logs; it returns errors, with ErrNotFound for a missing record.
package results
