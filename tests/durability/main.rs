//! Runs survive what happens to the processes executing them: a crash, a second
//! instance sharing the database, SIGTERM, a lost database.

#[path = "../common/mod.rs"]
mod common;

mod agent;
mod cluster;
mod crash;
mod lifecycle;
mod multinode;
