//! Guards: the Leases that hold targets (locks, cooldowns, failure counts, intents) and
//! the submission token buckets, kept in the cluster so that they hold across replicas.
pub mod lease;
pub mod ratelimit;
