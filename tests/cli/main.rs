//! Behaviour tests: the real `ehrlift` binary against real files in temp dirs.
//! Tests named `issue_N_*` pin down what issue N asked for.

mod harness;

mod db;
mod db_types;
mod demo;
mod edge;
mod encrypt;
mod fixed;
mod hl7;
mod init;
mod phi;
mod privacy;
mod report;
mod report_html;
mod resume;
mod s3;
mod shard;
mod synthea;
