//! Hostile input, egress, paths, secrets, uploads and durability faults: each test here
//! pins a request or fault that once crashed the service, leaked, or made it do
//! unbounded work.

#[path = "../common/mod.rs"]
mod common;

mod durability;
mod egress;
mod input;
mod paths;
mod secrets;
mod uploads;
