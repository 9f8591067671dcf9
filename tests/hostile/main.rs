//! Hostile input, egress, paths, secrets, uploads, programs, CORS origins, markdown ids,
//! webhook destinations and durability faults: each test here pins a request or fault
//! that once crashed the service, leaked, or made it do unbounded work.

#[path = "../common/mod.rs"]
mod common;

mod code;
mod cors;
mod durability;
mod egress;
mod input;
mod markdown;
mod paths;
mod secrets;
mod uploads;
mod webhooks;
