//! The pmiplab lab harness: the scenario format, its validation, runs with
//! verdicts, snapshots and reports.

pub mod bench;
pub mod crafted;
pub mod deploy;
pub mod engine;
pub mod forwarding;
pub mod frames;
pub mod graph;
pub mod interrupt;
pub mod iut;
pub mod lab;
pub mod netns_run;
pub mod node_config;
pub mod plan;
pub mod report;
pub mod run;
pub mod run_cmd;
pub mod run_report;
pub mod running_flows;
pub mod scenario;
pub mod sender_drops;
pub mod snapshots;
pub mod validate;
pub mod virtual_lab;
