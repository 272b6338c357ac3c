pub mod attest;
