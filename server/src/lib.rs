//! weir as a library: the commands of the `weir` binary (`check`, `run`, `serve`) and the
//! service behind `weir serve` ([`serve`]), so that tests drive the HTTP router in-process
//! ([`serve::routes::app`]) and only crash tests spawn the binary.

pub mod check_cmd;
pub mod run_cmd;
pub mod serve;
pub mod serve_cmd;
